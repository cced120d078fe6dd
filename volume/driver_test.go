package volume

import (
	"context"
	"errors"
	"maps"
	"sort"
	"sync"
	"time"

	"github.com/dockplug/dockplug/plugin"
)

// memDriver is an in-memory Driver that keeps a per-(volume, ID) mount
// counter (G1) and records every call it receives. Tests steer it with
// errs (method -> error to return), panics (method -> panic) and resps
// (method -> response to return instead of the real one).
type memDriver struct {
	mu     sync.Mutex
	vols   map[string]*Volume
	opts   map[string]map[string]string
	mounts map[string]map[string]int // volume -> ID -> count
	calls  []string
	scope  string

	errs   map[string]error
	panics map[string]bool
	resps  map[string]any
	block  map[string]bool // wait for ctx to end
}

func newMemDriver() *memDriver {
	return &memDriver{
		vols:   map[string]*Volume{},
		opts:   map[string]map[string]string{},
		mounts: map[string]map[string]int{},
		errs:   map[string]error{},
		panics: map[string]bool{},
		resps:  map[string]any{},
		block:  map[string]bool{},
		scope:  ScopeGlobal,
	}
}

// enter records a call and applies the steering; it returns (resp, err,
// true) when the steering decides the answer.
func (d *memDriver) enter(ctx context.Context, method, arg string) (any, error, bool) {
	d.mu.Lock()
	d.calls = append(d.calls, method+" "+arg)
	err, hasErr := d.errs[method]
	p := d.panics[method]
	resp, hasResp := d.resps[method]
	block := d.block[method]
	d.mu.Unlock()
	if p {
		panic("driver exploded in " + method)
	}
	if block {
		<-ctx.Done()
		return nil, ctx.Err(), true
	}
	if hasErr {
		return nil, err, true
	}
	if hasResp {
		return resp, nil, true
	}
	return nil, nil, false
}

func (d *memDriver) callLog() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.calls...)
}

func (d *memDriver) count(name, id string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.mounts[name][id]
}

func (d *memDriver) Create(ctx context.Context, req *CreateRequest) error {
	if _, err, ok := d.enter(ctx, "Create", req.Name); ok {
		return err
	}
	if req.Opts == nil {
		return errors.New("handler passed nil Opts")
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.vols[req.Name]; ok {
		return plugin.Conflict("volume %s exists", req.Name)
	}
	d.vols[req.Name] = &Volume{
		Name:      req.Name,
		CreatedAt: time.Date(2025, 3, 4, 5, 6, 7, 890, time.FixedZone("x", 3600)),
		Status:    map[string]any{"opts": len(req.Opts)},
	}
	d.opts[req.Name] = maps.Clone(req.Opts)
	return nil
}

func (d *memDriver) Remove(ctx context.Context, req *RemoveRequest) error {
	if _, err, ok := d.enter(ctx, "Remove", req.Name); ok {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.vols[req.Name]; !ok {
		return plugin.NotFound("no volume %s", req.Name)
	}
	if len(d.mounts[req.Name]) > 0 {
		return plugin.Conflict("volume %s is in use", req.Name)
	}
	delete(d.vols, req.Name)
	return nil
}

func (d *memDriver) Mount(ctx context.Context, req *MountRequest) (*MountResponse, error) {
	if r, err, ok := d.enter(ctx, "Mount", req.Name+" "+req.ID); ok {
		resp, _ := r.(*MountResponse)
		return resp, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	v, ok := d.vols[req.Name]
	if !ok {
		return nil, plugin.NotFound("no volume %s", req.Name)
	}
	if d.mounts[req.Name] == nil {
		d.mounts[req.Name] = map[string]int{}
	}
	d.mounts[req.Name][req.ID]++ // a counter, not a set (G1)
	v.Mountpoint = "/mnt/" + req.Name
	return &MountResponse{Mountpoint: v.Mountpoint}, nil
}

func (d *memDriver) Unmount(ctx context.Context, req *UnmountRequest) error {
	if _, err, ok := d.enter(ctx, "Unmount", req.Name+" "+req.ID); ok {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	n := d.mounts[req.Name][req.ID]
	if n == 0 {
		return plugin.BadRequest("volume %s is not mounted with ID %s", req.Name, req.ID)
	}
	if n == 1 {
		delete(d.mounts[req.Name], req.ID)
	} else {
		d.mounts[req.Name][req.ID] = n - 1
	}
	if len(d.mounts[req.Name]) == 0 {
		delete(d.mounts, req.Name)
		d.vols[req.Name].Mountpoint = ""
	}
	return nil
}

func (d *memDriver) Path(ctx context.Context, req *PathRequest) (*PathResponse, error) {
	if r, err, ok := d.enter(ctx, "Path", req.Name); ok {
		resp, _ := r.(*PathResponse)
		return resp, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	v, ok := d.vols[req.Name]
	if !ok {
		return nil, plugin.NotFound("no volume %s", req.Name)
	}
	return &PathResponse{Mountpoint: v.Mountpoint}, nil
}

func (d *memDriver) Get(ctx context.Context, req *GetRequest) (*GetResponse, error) {
	if r, err, ok := d.enter(ctx, "Get", req.Name); ok {
		resp, _ := r.(*GetResponse)
		return resp, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	v, ok := d.vols[req.Name]
	if !ok {
		return &GetResponse{}, nil // null Volume: really does not exist
	}
	c := *v
	return &GetResponse{Volume: &c}, nil
}

func (d *memDriver) List(ctx context.Context) (*ListResponse, error) {
	if r, err, ok := d.enter(ctx, "List", ""); ok {
		resp, _ := r.(*ListResponse)
		return resp, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	resp := &ListResponse{}
	for _, v := range d.vols {
		c := *v
		resp.Volumes = append(resp.Volumes, &c)
	}
	sort.Slice(resp.Volumes, func(i, j int) bool { return resp.Volumes[i].Name < resp.Volumes[j].Name })
	return resp, nil
}

func (d *memDriver) Capabilities(ctx context.Context) (*CapabilitiesResponse, error) {
	if r, err, ok := d.enter(ctx, "Capabilities", ""); ok {
		resp, _ := r.(*CapabilitiesResponse)
		return resp, err
	}
	return &CapabilitiesResponse{Capabilities: Capability{Scope: d.scope}}, nil
}

var _ Driver = (*memDriver)(nil)

// with runs f under the driver's lock: tests steer the driver while the
// server's goroutines read it.
func (d *memDriver) with(f func()) {
	d.mu.Lock()
	defer d.mu.Unlock()
	f()
}
