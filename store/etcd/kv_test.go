package etcd_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/dockplug/dockplug/store"
	"github.com/dockplug/dockplug/store/etcd"
	"github.com/dockplug/dockplug/store/etcd/etcdtest"
)

func TestKVConditions(t *testing.T) {
	srv := etcdtest.Start(t, etcdtest.WithoutFsync())
	ctx := t.Context()
	kv := etcd.NewKV(srv.Client())
	txn := func(want bool, conds []store.Cond, ops ...store.Op) int64 {
		t.Helper()
		ok, rev, err := kv.Txn(ctx, conds, ops...)
		if err != nil || ok != want {
			t.Fatalf("txn %v: ok %v, want %v (%v)", conds, ok, want, err)
		}
		return rev
	}
	// Create if absent: once.
	rev := txn(true, []store.Cond{store.IfAbsent("a/1")}, store.Put("a/1", []byte("x"), 0))
	txn(false, []store.Cond{store.IfAbsent("a/1")}, store.Put("a/1", []byte("y"), 0))
	e, ok, err := kv.Get(ctx, "a/1")
	if err != nil || !ok || string(e.Value) != "x" || e.CreateRev != rev || e.ModRev != rev {
		t.Fatalf("get a/1: %+v %v %v (rev %d)", e, ok, err, rev)
	}
	// Compare-and-put: the revision read, then a stale one.
	rev2 := txn(true, []store.Cond{store.IfUnchanged("a/1", e.ModRev), store.IfCreated("a/1", rev)}, store.Put("a/1", []byte("y"), 0))
	txn(false, []store.Cond{store.IfUnchanged("a/1", e.ModRev)}, store.Put("a/1", []byte("z"), 0))
	txn(false, []store.Cond{store.IfValue("a/1", []byte("x"))}, store.Delete("a/1"))
	txn(true, []store.Cond{store.IfValue("a/1", []byte("y"))}, store.Put("a/2", []byte("2"), 0), store.Put("b", nil, 0))
	// A range unchanged since a revision.
	txn(false, []store.Cond{store.IfRangeUnchangedSince("a/", store.PrefixEnd("a/"), rev2)})
	last := txn(true, []store.Cond{store.IfRangeUnchangedSince("a/", store.PrefixEnd("a/"), rev2+1)})
	es, lrev, err := kv.List(ctx, "a/", store.PrefixEnd("a/"), 0)
	if err != nil || len(es) != 2 || es[0].Key != "a/1" || es[1].Key != "a/2" || lrev != last {
		t.Fatalf("list: %+v %d %v", es, lrev, err)
	}
	old, _, err := kv.List(ctx, "a/", store.PrefixEnd("a/"), rev)
	if err != nil || len(old) != 1 || string(old[0].Value) != "x" {
		t.Fatalf("list at %d: %+v %v", rev, old, err)
	}
	// Compare-and-delete, and a range delete.
	txn(true, []store.Cond{store.IfCreated("a/1", rev)}, store.Delete("a/1"))
	txn(true, nil, store.DeleteRange("a/", store.PrefixEnd("a/")))
	if n, err := kv.Count(ctx, "\x00", store.PrefixEnd("")); err != nil || n != 1 {
		t.Fatalf("count %d %v, want b only", n, err)
	}
}

func TestKVLeaseExpiry(t *testing.T) {
	srv := etcdtest.Start(t, etcdtest.WithoutFsync())
	ctx := t.Context()
	kv := etcd.NewKV(srv.Client())
	id, err := kv.Grant(ctx, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if ok, _, err := kv.Txn(ctx, nil, store.Put("leased", []byte("v"), id)); !ok || err != nil {
		t.Fatalf("put: %v %v", ok, err)
	}
	e, ok, err := kv.Get(ctx, "leased")
	if err != nil || !ok || e.Lease != id {
		t.Fatalf("get: %+v %v %v", e, ok, err)
	}
	if err := kv.Revoke(ctx, id); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := kv.Get(ctx, "leased"); ok || err != nil {
		t.Fatalf("still there after revoke: %v", err)
	}
	if _, _, err := kv.Txn(ctx, nil, store.Put("leased", []byte("v"), id)); !errors.Is(err, store.ErrLeaseNotFound) {
		t.Fatalf("put with a revoked lease: %v, want ErrLeaseNotFound", err)
	}
	if got := store.PrefixEnd("a/"); got != "a0" {
		t.Fatalf("PrefixEnd(a/) = %q", got)
	}
}

func TestKVThreeMemberClusterSurvivesLeaderRestart(t *testing.T) {
	members := etcdtest.StartCluster(t, 3, etcdtest.WithoutFsync())
	ctx := t.Context()
	cli, err := etcd.Dial(ctx, etcdtest.ClusterEndpoints(members))
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	kv := etcd.NewKV(cli)
	put := func(key string) {
		t.Helper()
		err := etcd.Retry{MinBackoff: 10 * time.Millisecond}.Do(ctx, func(ctx context.Context) error {
			_, _, err := kv.Txn(ctx, []store.Cond{store.IfAbsent(key)}, store.Put(key, []byte("v"), 0))
			return err
		})
		if err != nil {
			t.Fatalf("put %s: %v", key, err)
		}
	}
	put("before")
	var leader *etcdtest.Server
	for leader == nil {
		for _, m := range members {
			if m.IsLeader() {
				leader = m
			}
		}
		time.Sleep(10 * time.Millisecond) // an election may be under way
	}
	leader.Stop()
	put("leader-down") // two of three: still a majority
	leader.Restart()
	put("after")
	if n, err := kv.Count(ctx, "\x00", store.PrefixEnd("")); err != nil || n != 3 {
		t.Fatalf("count %d %v", n, err)
	}
}
