package etcd

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/dockplug/dockplug/store"
)

// KV is store.KV over an etcd client. Each call is one etcd request; it
// does not retry (run callers in Do).
type KV struct{ cli *clientv3.Client }

var _ store.KV = (*KV)(nil)

// NewKV returns store.KV over cli; closing cli is the caller's business.
func NewKV(cli *clientv3.Client) *KV { return &KV{cli} }

// Client is the etcd client underneath.
func (k *KV) Client() *clientv3.Client { return k.cli }

func entry(kv interface {
	GetKey() []byte
	GetValue() []byte
	GetCreateRevision() int64
	GetModRevision() int64
	GetLease() int64
}) store.Entry {
	return store.Entry{Key: string(kv.GetKey()), Value: kv.GetValue(), CreateRev: kv.GetCreateRevision(),
		ModRev: kv.GetModRevision(), Lease: store.LeaseID(kv.GetLease())}
}

// Get implements store.KV.
func (k *KV) Get(ctx context.Context, key string) (store.Entry, bool, error) {
	resp, err := k.cli.Get(ctx, key)
	if err != nil {
		return store.Entry{}, false, fmt.Errorf("get %s: %w", key, err)
	}
	if len(resp.Kvs) == 0 {
		return store.Entry{}, false, nil
	}
	return entry(resp.Kvs[0]), true, nil
}

// List implements store.KV.
func (k *KV) List(ctx context.Context, from, to string, rev int64) ([]store.Entry, int64, error) {
	opts := []clientv3.OpOption{clientv3.WithRange(to)}
	if rev > 0 {
		opts = append(opts, clientv3.WithRev(rev))
	}
	resp, err := k.cli.Get(ctx, from, opts...)
	if err != nil {
		return nil, 0, fmt.Errorf("list %s: %w", from, err)
	}
	out := make([]store.Entry, len(resp.Kvs))
	for i, kv := range resp.Kvs {
		out[i] = entry(kv)
	}
	return out, resp.Header.Revision, nil
}

// Count implements store.KV.
func (k *KV) Count(ctx context.Context, from, to string) (int64, error) {
	resp, err := k.cli.Get(ctx, from, clientv3.WithRange(to), clientv3.WithCountOnly())
	if err != nil {
		return 0, fmt.Errorf("count %s: %w", from, err)
	}
	return resp.Count, nil
}

// Txn implements store.KV.
func (k *KV) Txn(ctx context.Context, conds []store.Cond, ops ...store.Op) (bool, int64, error) {
	cmps := make([]clientv3.Cmp, 0, len(conds))
	for _, c := range conds {
		switch c.Kind {
		case store.CondAbsent:
			cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(c.Key), "=", 0))
		case store.CondCreated:
			cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(c.Key), "=", c.Rev))
		case store.CondUnchanged:
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(c.Key), "=", c.Rev))
		case store.CondValue:
			cmps = append(cmps, clientv3.Compare(clientv3.Value(c.Key), "=", string(c.Value)))
		case store.CondRangeUnchangedSince:
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(c.Key), "<", c.Rev+1).WithRange(c.End))
		default:
			return false, 0, fmt.Errorf("txn: unknown condition kind %d", c.Kind)
		}
	}
	eops := make([]clientv3.Op, 0, len(ops))
	for _, o := range ops {
		switch o.Kind {
		case store.OpPut:
			var opts []clientv3.OpOption
			if o.Lease != 0 {
				opts = append(opts, clientv3.WithLease(clientv3.LeaseID(o.Lease)))
			}
			eops = append(eops, clientv3.OpPut(o.Key, string(o.Value), opts...))
		case store.OpDelete:
			eops = append(eops, clientv3.OpDelete(o.Key))
		case store.OpDeleteRange:
			eops = append(eops, clientv3.OpDelete(o.Key, clientv3.WithRange(o.End)))
		default:
			return false, 0, fmt.Errorf("txn: unknown operation kind %d", o.Kind)
		}
	}
	resp, err := k.cli.Txn(ctx).If(cmps...).Then(eops...).Commit()
	if errors.Is(err, rpctypes.ErrLeaseNotFound) {
		return false, 0, fmt.Errorf("txn: %w: %w", store.ErrLeaseNotFound, err)
	}
	if err != nil {
		return false, 0, fmt.Errorf("txn: %w", err)
	}
	return resp.Succeeded, resp.Header.Revision, nil
}

// Grant implements store.KV (etcd leases have whole seconds, at least 1).
func (k *KV) Grant(ctx context.Context, ttl time.Duration) (store.LeaseID, error) {
	resp, err := k.cli.Grant(ctx, max(int64((ttl+time.Second-1)/time.Second), 1))
	if err != nil {
		return 0, fmt.Errorf("grant lease: %w", err)
	}
	return store.LeaseID(resp.ID), nil
}

// KeepAlive implements store.KV.
func (k *KV) KeepAlive(ctx context.Context, id store.LeaseID) (<-chan struct{}, error) {
	ch, err := k.cli.KeepAlive(ctx, clientv3.LeaseID(id))
	if err != nil {
		return nil, fmt.Errorf("keep lease %x alive: %w", id, err)
	}
	lost := make(chan struct{})
	go func() {
		for range ch {
		}
		close(lost)
	}()
	return lost, nil
}

// Revoke implements store.KV.
func (k *KV) Revoke(ctx context.Context, id store.LeaseID) error {
	if _, err := k.cli.Revoke(ctx, clientv3.LeaseID(id)); err != nil {
		return fmt.Errorf("revoke lease %x: %w", id, err)
	}
	return nil
}
