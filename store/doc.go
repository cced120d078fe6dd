// Package store holds dockplug's state back-ends: bolt (one bbolt file, the
// embedded default for one machine) and etcd (state shared by several
// hosts), and KV, the small transactional key-value interface that state
// shared by several hosts is written against (store/etcd implements it).
// Drivers keep their own schema on top.
package store
