package ipam

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"testing"

	"github.com/dockplug/dockplug/plugin"
)

// Server side: fuzzed bodies through the Handler's methods. The fake driver
// always succeeds, so any error must be a clear 400 *plugin.Error, and any
// request that reaches the driver must satisfy the Driver's promises.

var requestSeeds = []string{
	``,
	`{}`,
	`null`,
	`{"AddressSpace":"LocalDefault","Pool":"","SubPool":"","Options":null,"V6":false}` + "\n",
	`{"AddressSpace":"LocalDefault","Pool":"10.1.0.0/16","SubPool":"10.1.2.0/24","Options":{"com.docker.network.ipam.serial":"true"},"V6":false}`,
	`{"AddressSpace":"LocalDefault","Pool":"fd00::/48","V6":true}`,
	`{"PoolID":"LocalDefault/10.1.0.0/16","Address":"","Options":{"RequestAddressType":"com.docker.network.gateway"}}`,
	`{"PoolID":"p","Address":"10.1.0.5","Options":{"com.docker.network.endpoint.name":"web","com.docker.network.endpoint.macaddress":"02:42:ac:11:00:02"}}`,
	`{"PoolID":"p","Address":"fe80::1%eth0"}`,
	`{"PoolID":"p"}`,
	`{"Pool":"10.0.0.0/8","SubPool":"11.0.0.0/24"}`,
	`{"Pool":1}`,
	`[`,
}

func fuzzHandler(f *testing.F, method string, check func(t *testing.T, req any)) {
	for _, s := range requestSeeds {
		f.Add([]byte(s))
	}
	d := newFake()
	fn := NewHandler(d).Methods()[method]
	f.Fuzz(func(t *testing.T, body []byte) {
		resp, err := fn(context.Background(), body)
		if err != nil {
			var pe *plugin.Error
			if !errors.As(err, &pe) || pe.Status != http.StatusBadRequest || pe.Msg == "" {
				t.Fatalf("body %q: error %v (%T) is not a 400 *plugin.Error", body, err, err)
			}
			return
		}
		_ = resp
		check(t, d.lastReq())
	})
}

func FuzzRequestPoolRequest(f *testing.F) {
	fuzzHandler(f, MethodRequestPool, func(t *testing.T, r any) {
		req := r.(*RequestPoolRequest)
		if req.Pool != "" {
			if _, err := netip.ParsePrefix(req.Pool); err != nil {
				t.Fatalf("bad Pool reached the driver: %q", req.Pool)
			}
		}
		if req.SubPool != "" {
			if req.Pool == "" {
				t.Fatalf("SubPool without Pool reached the driver")
			}
			pool := netip.MustParsePrefix(req.Pool).Masked()
			sub, err := netip.ParsePrefix(req.SubPool)
			if err != nil || !pool.Contains(sub.Addr()) || sub.Bits() < pool.Bits() {
				t.Fatalf("SubPool %q outside Pool %q reached the driver", req.SubPool, req.Pool)
			}
		}
	})
}

func FuzzReleasePoolRequest(f *testing.F) {
	fuzzHandler(f, MethodReleasePool, func(t *testing.T, r any) {
		if r.(*ReleasePoolRequest).PoolID == "" {
			t.Fatal("empty PoolID reached the driver")
		}
	})
}

func checkIP(t *testing.T, s string) {
	if s == "" {
		return
	}
	if a, err := netip.ParseAddr(s); err != nil || a.Zone() != "" {
		t.Fatalf("bad Address %q reached the driver", s)
	}
}

func FuzzRequestAddressRequest(f *testing.F) {
	fuzzHandler(f, MethodRequestAddress, func(t *testing.T, r any) {
		req := r.(*RequestAddressRequest)
		if req.PoolID == "" {
			t.Fatal("empty PoolID reached the driver")
		}
		checkIP(t, req.Address)
	})
}

func FuzzReleaseAddressRequest(f *testing.F) {
	fuzzHandler(f, MethodReleaseAddress, func(t *testing.T, r any) {
		req := r.(*ReleaseAddressRequest)
		if req.PoolID == "" {
			t.Fatal("empty PoolID reached the driver")
		}
		checkIP(t, req.Address)
	})
}

// Client side: fuzzed 200 bodies through the Client's decoders. No panic,
// and whatever is accepted passes the daemon's checks (G12, G19).

var responseSeeds = []string{
	``,
	`{}`,
	`null`,
	`{"RequiresMACAddress":true,"RequiresRequestReplay":false}`,
	`{"LocalDefaultAddressSpace":"LocalDefault","GlobalDefaultAddressSpace":"GlobalDefault"}`,
	`{"PoolID":"LocalDefault/10.1.0.0/16","Pool":"10.1.0.0/16","Data":{"com.docker.network.gateway":"10.1.0.1/16"}}`,
	`{"Address":"10.1.0.5/16","Data":null}`,
	`{"Error":"no pools"}`,
	`{"Err":"ignored","Pool":"fd00::/64","Address":"fd00::2/64"}`,
	`{"Pool":"10.0.0.0"}`,
	`{"Address":"10.0.0.2"}`,
	`{"pool":"10.0.0.0/8"} trailing`,
	`[1,2]`,
}

// decode returns the decoder's error, or for an accepted body what is wrong
// with it ("" if nothing).
func fuzzResponse(f *testing.F, decode func([]byte) (problem string, err error)) {
	for _, s := range responseSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		problem, err := decode(body)
		if err == nil && problem != "" {
			t.Fatalf("body %q accepted: %s", body, problem)
		}
	})
}

func FuzzCapabilitiesResponse(f *testing.F) {
	fuzzResponse(f, func(b []byte) (string, error) {
		r, err := decode[CapabilitiesResponse](MethodGetCapabilities, b)
		if err != nil {
			return "", err
		}
		return errorAccepted(r.Error), nil
	})
}

func FuzzAddressSpacesResponse(f *testing.F) {
	fuzzResponse(f, func(b []byte) (string, error) {
		r, err := decode[AddressSpacesResponse](MethodGetDefaultAddressSpaces, b)
		if err != nil {
			return "", err
		}
		return errorAccepted(r.Error), nil
	})
}

func FuzzRequestPoolResponse(f *testing.F) {
	fuzzResponse(f, func(b []byte) (string, error) {
		r, err := decodeRequestPool(b)
		if err != nil {
			return "", err
		}
		if _, perr := netip.ParsePrefix(r.Pool); perr != nil {
			return "bad pool " + r.Pool, nil
		}
		return errorAccepted(r.Error), nil
	})
}

func FuzzRequestAddressResponse(f *testing.F) {
	fuzzResponse(f, func(b []byte) (string, error) {
		r, err := decodeRequestAddress(b)
		if err != nil {
			return "", err
		}
		if _, _, perr := net.ParseCIDR(r.Address); perr != nil {
			return "bad address " + r.Address, nil
		}
		return errorAccepted(r.Error), nil
	})
}

func FuzzReleaseResponse(f *testing.F) {
	fuzzResponse(f, func(b []byte) (string, error) {
		r, err := decode[releaseResponse](MethodReleasePool, b)
		if err != nil {
			return "", err
		}
		return errorAccepted(r.Error), nil
	})
}

func errorAccepted(e string) string {
	if e != "" {
		return "its Error " + e + " was not reported (G12)"
	}
	return ""
}
