package bridge

import (
	"encoding/json"
	"fmt"
	"net/netip"

	bbolt "go.etcd.io/bbolt"

	"github.com/dockplug/dockplug/network"
)

// What the driver keeps in bbolt. A record exists exactly when its kernel
// objects should: creation makes the kernel objects first and records them
// after, deletion drops the record first; reconcile removes whatever of
// ours no record claims, so a crash between the two steps leaks nothing.

var (
	bucketNetworks  = []byte("networks")  // network ID -> netRecord
	bucketEndpoints = []byte("endpoints") // endpoint ID -> epRecord
)

type netRecord struct {
	ID         string     `json:"id"`
	Bridge     string     `json:"bridge"`
	MTU        int        `json:"mtu,omitempty"`
	ICC        bool       `json:"icc"`
	Masquerade bool       `json:"masquerade"`
	Internal   bool       `json:"internal"`
	HostIP     netip.Addr `json:"host_ip,omitzero"`
	IfPrefix   string     `json:"iface_prefix"`
	IPv4       []subnet   `json:"ipv4,omitempty"`
	IPv6       []subnet   `json:"ipv6,omitempty"`
}

// gateway returns the first gateway address of a family's pools.
func gateway(pools []subnet) netip.Addr {
	for _, s := range pools {
		if s.Gateway.IsValid() {
			return s.Gateway.Addr()
		}
	}
	return netip.Addr{}
}

type epRecord struct {
	ID        string       `json:"id"`
	NetworkID string       `json:"network_id"`
	Addr      netip.Prefix `json:"addr,omitzero"`
	Addr6     netip.Prefix `json:"addr6,omitzero"`
	MAC       string       `json:"mac,omitempty"`
	HostIf    string       `json:"host_if"`
	PeerIf    string       `json:"peer_if"`
	Joined    bool         `json:"joined"`
	Sandbox   string       `json:"sandbox,omitempty"`
	Ports     []portMap    `json:"ports,omitempty"` // programmed mappings, host ports resolved
}

// portMap is one published port with its host port chosen.
type portMap struct {
	Proto    network.Protocol `json:"proto"`
	HostIP   netip.Addr       `json:"host_ip,omitzero"` // zero: every host address
	HostPort uint16           `json:"host_port"`
	IP       netip.Addr       `json:"ip"` // the container's
	Port     uint16           `json:"port"`
}

func (p portMap) String() string {
	h := "0.0.0.0"
	if p.HostIP.IsValid() {
		h = p.HostIP.String()
	}
	return fmt.Sprintf("%s:%d->%s:%d/%s", h, p.HostPort, p.IP, p.Port, p.Proto)
}

func put(tx *bbolt.Tx, bucket []byte, id string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return tx.Bucket(bucket).Put([]byte(id), b)
}

// loadAll reads every record.
func loadAll(db *bbolt.DB) (map[string]*netRecord, map[string]*epRecord, error) {
	nets, eps := map[string]*netRecord{}, map[string]*epRecord{}
	err := db.View(func(tx *bbolt.Tx) error {
		if err := tx.Bucket(bucketNetworks).ForEach(func(k, v []byte) error {
			var n netRecord
			if err := json.Unmarshal(v, &n); err != nil {
				return fmt.Errorf("network %s: %w", k, err)
			}
			nets[n.ID] = &n
			return nil
		}); err != nil {
			return err
		}
		return tx.Bucket(bucketEndpoints).ForEach(func(k, v []byte) error {
			var e epRecord
			if err := json.Unmarshal(v, &e); err != nil {
				return fmt.Errorf("endpoint %s: %w", k, err)
			}
			eps[e.ID] = &e
			return nil
		})
	})
	if err != nil {
		return nil, nil, fmt.Errorf("read state: %w", err)
	}
	return nets, eps, nil
}
