// Package linearizability checks dockplug-ipam's global address space
// under faults (issue 10, section 2): a 3-member etcd cluster (embedded,
// on 127.0.0.1), 3 `dockplug serve dockplug-ipam` processes (the real
// binary, each its own state dir and host ID) sharing a global pool,
// driven through their sockets by daemon-like clients while etcd members
// (the leader among them) are restarted, plugin processes are killed
// with kill -9 and started again, and the plugins' connections to etcd are
// cut (they go through proxies), losing replies of applied transactions. The recorded history is checked with
// porcupine against a sequential model; see ipam_test.go.
//
// The default size fits CI (about a minute); larger by flag, e.g.
//
//	go test ./linearizability/ -v -lin.duration=10m
//
// and the throughput figures (allocations per second with 1, 3 and 6
// processes on the 3-member cluster) with
//
//	go test ./linearizability/ -v -run Throughput -lin.bench
package linearizability
