package volume

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"testing"

	"github.com/dockplug/dockplug/plugin"
)

// okDriver accepts everything and checks that the Handler only lets clean
// requests through.
type okDriver struct{ t *testing.T }

func (d okDriver) name(n string) {
	if n == "" {
		d.t.Fatal("Handler passed an empty Name to the driver")
	}
}

func (d okDriver) Create(_ context.Context, r *CreateRequest) error {
	d.name(r.Name)
	if r.Opts == nil {
		d.t.Fatal("Handler passed nil Opts")
	}
	return nil
}
func (d okDriver) Remove(_ context.Context, r *RemoveRequest) error { d.name(r.Name); return nil }
func (d okDriver) Mount(_ context.Context, r *MountRequest) (*MountResponse, error) {
	d.name(r.Name)
	if r.ID == "" {
		d.t.Fatal("Handler passed an empty ID to Mount")
	}
	return &MountResponse{Mountpoint: "/m/" + r.Name}, nil
}
func (d okDriver) Unmount(_ context.Context, r *UnmountRequest) error {
	d.name(r.Name)
	if r.ID == "" {
		d.t.Fatal("Handler passed an empty ID to Unmount")
	}
	return nil
}
func (d okDriver) Path(_ context.Context, r *PathRequest) (*PathResponse, error) {
	d.name(r.Name)
	return &PathResponse{}, nil
}
func (d okDriver) Get(_ context.Context, r *GetRequest) (*GetResponse, error) {
	d.name(r.Name)
	return &GetResponse{Volume: &Volume{Name: r.Name}}, nil
}
func (d okDriver) List(context.Context) (*ListResponse, error) { return &ListResponse{}, nil }
func (d okDriver) Capabilities(context.Context) (*CapabilitiesResponse, error) {
	return &CapabilitiesResponse{}, nil
}

var requestSeeds = []string{
	"",
	"{}",
	"{}\n",
	"null",
	`{"Name":"v","Opts":null}`,
	`{"Name":"v","Opts":{"size":"1G","type":"ext4"}}`,
	`{"Name":"v","ID":"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}`,
	`{"name":"v","id":"x"}`,
	`{"Name":""}`,
	`{"Name":"v","ID":""}`,
	`{"Name":5}`,
	`{"Name":"v","Opts":{"a":1}}`,
	`[]`,
	`{`,
	`{"Name":"v"} trailing`,
	"{\"Name\":\"\xff\"}",
}

// fuzzRequest feeds body to the Handler's method: it must not panic, and
// any error must be a 400 *plugin.Error with a message (the driver never
// fails here).
func fuzzRequest(f *testing.F, method string) {
	for _, s := range requestSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		fn := NewHandler(okDriver{t}).Methods()[method]
		resp, err := fn(context.Background(), body)
		if err != nil {
			var pe *plugin.Error
			if !errors.As(err, &pe) || pe.Status != http.StatusBadRequest || pe.Error() == "" {
				t.Fatalf("%s(%q): err = %#v, want a 400 *plugin.Error", method, body, err)
			}
			return
		}
		if _, err := json.Marshal(resp); err != nil {
			t.Fatalf("%s(%q): answer does not encode: %v", method, body, err)
		}
	})
}

func FuzzCreateRequest(f *testing.F)       { fuzzRequest(f, MethodCreate) }
func FuzzRemoveRequest(f *testing.F)       { fuzzRequest(f, MethodRemove) }
func FuzzMountRequest(f *testing.F)        { fuzzRequest(f, MethodMount) }
func FuzzUnmountRequest(f *testing.F)      { fuzzRequest(f, MethodUnmount) }
func FuzzPathRequest(f *testing.F)         { fuzzRequest(f, MethodPath) }
func FuzzGetRequest(f *testing.F)          { fuzzRequest(f, MethodGet) }
func FuzzListRequest(f *testing.F)         { fuzzRequest(f, MethodList) }
func FuzzCapabilitiesRequest(f *testing.F) { fuzzRequest(f, MethodCapabilities) }

var responseSeeds = []string{
	"",
	"{}",
	"null",
	`{"Err":"boom"}`,
	`{"err":""}`,
	`{"Mountpoint":"/m"}`,
	`{"Mountpoint":"/m","Err":"x"}`,
	`{"Volume":null}`,
	`{"Volume":{"Name":"v","Mountpoint":"/m","CreatedAt":"2024-01-02T03:04:05Z","Status":{"a":[1,{"b":null}]}}}`,
	`{"Volume":{"Name":"v","CreatedAt":"2024-01-02 03:04:05"}}`,
	`{"Volumes":[{"Name":"a"},{"Name":"b","CreatedAt":"2024-01-02T03:04:05.5+01:00"}]}`,
	`{"Volumes":[null]}`,
	`{"Volumes":{}}`,
	`{"Capabilities":{"Scope":"global"}}`,
	`{"Capabilities":{"Scope":"GLOBAL"}}`,
	`{"Capabilities":{"Scope":"other"}}`,
	`{"Capabilities":"local"}`,
	`{"Mountpoint":1}`,
	`{} {`,
	"[",
}

func addResponseSeeds(f *testing.F) {
	for _, s := range responseSeeds {
		f.Add([]byte(s))
	}
}

// FuzzErrResponse covers the Create, Remove and Unmount answers.
func FuzzErrResponse(f *testing.F) {
	addResponseSeeds(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		_ = decodeErr(MethodCreate, body)
	})
}

func FuzzMountResponse(f *testing.F) {
	addResponseSeeds(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		if r, err := decodeMount(body); (r == nil) == (err == nil) {
			t.Fatalf("decodeMount(%q) = %v, %v", body, r, err)
		}
	})
}

func FuzzPathResponse(f *testing.F) {
	addResponseSeeds(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		if r, err := decodePath(body); (r == nil) == (err == nil) {
			t.Fatalf("decodePath(%q) = %v, %v", body, r, err)
		}
	})
}

// FuzzGetResponse: no panic; success always has a Volume, which encodes to
// something the daemon (and so the Client) decodes again.
func FuzzGetResponse(f *testing.F) {
	addResponseSeeds(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		r, err := decodeGet(body)
		if err != nil {
			if r != nil {
				t.Fatalf("decodeGet(%q) returned an answer with %v", body, err)
			}
			return
		}
		if r.Volume == nil {
			t.Fatalf("decodeGet(%q) succeeded without a Volume", body)
		}
		again, err := json.Marshal(r)
		if err != nil {
			t.Fatalf("decoded Get %q does not encode: %v", body, err)
		}
		if _, err := decodeGet(again); err != nil {
			t.Fatalf("re-encoded Get %s does not decode: %v", again, err)
		}
	})
}

// FuzzListResponse: no panic; success never holds a nil volume.
func FuzzListResponse(f *testing.F) {
	addResponseSeeds(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		r, err := decodeList(body)
		if err != nil {
			return
		}
		for i, v := range r.Volumes {
			if v == nil {
				t.Fatalf("decodeList(%q): volume %d is nil", body, i)
			}
		}
		again, err := json.Marshal(r)
		if err != nil {
			t.Fatalf("decoded List %q does not encode: %v", body, err)
		}
		if _, err := decodeList(again); err != nil {
			t.Fatalf("re-encoded List %s does not decode: %v", again, err)
		}
	})
}

// FuzzCapabilitiesResponse: always a usable local or global scope.
func FuzzCapabilitiesResponse(f *testing.F) {
	addResponseSeeds(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		r, _ := decodeCapabilities(body)
		if r == nil || (r.Capabilities.Scope != ScopeLocal && r.Capabilities.Scope != ScopeGlobal) {
			t.Fatalf("decodeCapabilities(%q) = %+v", body, r)
		}
	})
}
