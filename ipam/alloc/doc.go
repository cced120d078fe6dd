// Package alloc is the allocation core of dockplug's IPAM plugin: which
// addresses of a pool are taken, and which subnets of the default address
// pools are. It is pure (no I/O, no goroutines, no locks).
//
// # Why not a bitmap
//
// Docker's built-in allocator kept one bit per address, so its memory grew
// with the pool: an IPv6 /64 could not be represented at all and large
// pools exhausted memory (moby#40275). Here memory grows only with what is
// allocated.
//
// # Data structure
//
// An Allocator stores the allocated addresses of one pool as a set of
// disjoint, coalesced ranges [lo, hi] of 128-bit integers (IPv4 uses the
// low 32 bits), kept in a B-tree ordered by lo (see spanTree). Ranges are
// never adjacent: allocating an address next to a range extends it, and
// filling a gap joins two ranges. With n the number of ranges:
//
//   - Allocate (first free): the lowest free address at or after the start of
//     the range is either that start or hi+1 of the range containing it,
//     because ranges never touch. One O(log n) lookup, no scan of addresses.
//   - AllocateSerial: the same from the serial cursor, plus at most one
//     wrap-around lookup.
//   - AllocateSpecific, Release, IsAllocated: O(log n); a release in the
//     middle of a range splits it into two.
//   - Count: O(1); Free: O(1) arithmetic.
//
// A million addresses handed out first-free are one range of 32 bytes; a
// million addresses scattered at random are about a million ranges, ~50 MB
// with B-tree slack (measured: 4.9 MB for 100k in the benchmark).
// Reserved addresses (network, IPv4 broadcast) are not stored: they are
// trimmed off the ends of the dynamic range and rejected by AllocateSpecific.
//
// A PoolAllocator hands out subnets of the default address pools (docker's
// default-address-pools) lowest first, skipping allocated pools and
// caller-supplied excluded prefixes by jumping from a blocker to the next
// aligned candidate after it; allocated pools are also kept coalesced so that
// a packed run of pools costs one jump. See PoolAllocator.
//
// Nothing here is safe for concurrent use: the plugin holds a lock per
// address space around each call.
package alloc
