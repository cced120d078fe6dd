// Package store holds dockplug's state back-ends: bolt (one bbolt file, the
// embedded default for one machine) and etcd (state shared by several
// hosts). Drivers keep their own schema on top.
package store
