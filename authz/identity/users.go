package identity

import (
	"os/user"
	"slices"
	"strconv"
	"sync"
	"time"
)

// Account is what the passwd and group databases say about a uid.
type Account struct {
	// Name is the user name; "" when the uid has no passwd entry.
	Name string
	// Groups are the names of the peer's gid and of every group the
	// database lists the user in (a group without a name as its number),
	// sorted. SO_PEERCRED carries no supplementary groups, so groups
	// joined with newgrp/sg are not seen, only the database's.
	Groups []string
}

// Accounts looks accounts up with os/user (the passwd and group
// databases), caching each answer for TTL.
type Accounts struct {
	TTL time.Duration
	mu  sync.Mutex
	m   map[[2]uint32]cached
}

type cached struct {
	a     Account
	until time.Time
}

// NewAccounts caches for 30 s: a user added to a group is seen within it.
func NewAccounts() *Accounts { return &Accounts{TTL: 30 * time.Second, m: map[[2]uint32]cached{}} }

// Lookup returns the account of uid, with the peer's gid among its groups.
func (a *Accounts) Lookup(uid, gid uint32) Account {
	k := [2]uint32{uid, gid}
	now := time.Now()
	a.mu.Lock()
	c, ok := a.m[k]
	a.mu.Unlock()
	if ok && now.Before(c.until) {
		return c.a
	}
	acc := lookup(uid, gid)
	a.mu.Lock()
	if len(a.m) > 4096 {
		clear(a.m)
	}
	a.m[k] = cached{acc, now.Add(a.TTL)}
	a.mu.Unlock()
	return acc
}

func lookup(uid, gid uint32) Account {
	var acc Account
	gids := []string{strconv.FormatUint(uint64(gid), 10)}
	if u, err := user.LookupId(strconv.FormatUint(uint64(uid), 10)); err == nil {
		acc.Name = u.Username
		if more, err := u.GroupIds(); err == nil {
			gids = append(gids, more...)
		}
	}
	for _, g := range gids {
		name := g
		if gr, err := user.LookupGroupId(g); err == nil {
			name = gr.Name
		}
		if !slices.Contains(acc.Groups, name) {
			acc.Groups = append(acc.Groups, name)
		}
	}
	slices.Sort(acc.Groups)
	return acc
}
