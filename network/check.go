package network

import (
	"fmt"
	"net"
)

// The checks the daemon applies to driver answers, with its error texts, so
// that the Handler can refuse a broken answer with a clear 500 and the
// Client reports what dockerd would.

// CheckCapabilities returns the daemon's error for a GetCapabilities answer
// it would refuse (the driver is then not registered at all).
func CheckCapabilities(c *Capabilities) error {
	if c == nil {
		c = &Capabilities{}
	}
	if c.Scope != ScopeLocal && c.Scope != ScopeGlobal {
		return fmt.Errorf("invalid capability: expecting 'local' or 'global', got %s", c.Scope)
	}
	switch c.ConnectivityScope {
	case "", ScopeLocal, ScopeGlobal:
	default:
		// The daemon prints Scope here (a slip in its message); we print
		// the offending value.
		return fmt.Errorf("invalid capability: expecting 'local' or 'global', got %s", c.ConnectivityScope)
	}
	return nil
}

// CheckInterfaceRule returns the error the daemon raises for a
// CreateEndpoint answer resp to the request interface req (G10): each field
// must parse, and the driver may only fill in fields that were empty in the
// request; returning an already-set field fails even with the same value.
// The daemon then rolls back with DeleteEndpoint. nil resp is always fine.
//
// As in the daemon, addresses go by family, not by field: an IPv4 CIDR in
// AddressIPv6 fills (or collides with) the IPv4 address.
func CheckInterfaceRule(req *EndpointInterface, resp *EndpointInterface) error {
	if resp == nil {
		return nil
	}
	if req == nil {
		req = &EndpointInterface{}
	}
	// Parse first, in the daemon's order.
	var addr, addr6 *net.IPNet
	var mac net.HardwareAddr
	var err error
	if resp.Address != "" {
		if addr, err = parseCIDR(resp.Address); err != nil {
			return err
		}
	}
	if resp.AddressIPv6 != "" {
		if addr6, err = parseCIDR(resp.AddressIPv6); err != nil {
			return err
		}
	}
	if resp.MacAddress != "" {
		if mac, err = net.ParseMAC(resp.MacAddress); err != nil {
			return err
		}
	}

	// What the daemon holds: the request's values, in its own format.
	held4, held6, heldMAC := cidrText(req.Address), cidrText(req.AddressIPv6), macText(req.MacAddress)
	if mac != nil {
		if heldMAC != "" {
			//lint:ignore ST1005 the daemon's exact words
			return fmt.Errorf("driver modified interface MAC address: endpoint interface MAC address present (%s). Cannot be modified with %s.", heldMAC, mac)
		}
	}
	for _, a := range []*net.IPNet{addr, addr6} {
		if a == nil {
			continue
		}
		slot := &held4
		if a.IP.To4() == nil {
			slot = &held6
		}
		if *slot != "" {
			//lint:ignore ST1005 the daemon's exact words
			return fmt.Errorf("driver modified interface address: endpoint interface IP present (%s). Cannot be modified with (%s).", *slot, a)
		}
		*slot = a.String()
	}
	return nil
}

// CheckJoinResponse returns the error the daemon raises for a Join answer it
// cannot use (it then sends Leave to roll back): Gateway and GatewayIPv6
// must be bare IPs, route destinations CIDRs, next hops IPs. It also refuses
// what the daemon accepts at Join but fails on later: a route without
// Destination (a nil dereference in libnetwork) and a RouteNextHop route
// without NextHop.
func CheckJoinResponse(resp *JoinResponse) error {
	if resp == nil {
		return nil
	}
	if resp.Gateway != "" && net.ParseIP(resp.Gateway) == nil {
		return fmt.Errorf(`unable to parse Gateway "%s"`, resp.Gateway)
	}
	if resp.GatewayIPv6 != "" && net.ParseIP(resp.GatewayIPv6) == nil {
		return fmt.Errorf(`unable to parse GatewayIPv6 "%s"`, resp.GatewayIPv6)
	}
	for i, r := range resp.StaticRoutes {
		if r.Destination != "" {
			if _, err := parseCIDR(r.Destination); err != nil {
				return err
			}
		}
		if r.NextHop != "" && net.ParseIP(r.NextHop) == nil {
			return fmt.Errorf("failed to parse nexthop IP %s", r.NextHop)
		}
		if r.Destination == "" {
			return fmt.Errorf("static route %d has no Destination", i)
		}
		if r.RouteType == RouteNextHop && r.NextHop == "" {
			return fmt.Errorf("static route %d to %s is of type next-hop (0) but has no NextHop", i, r.Destination)
		}
	}
	return nil
}

// parseCIDR is libnetwork's types.ParseCIDR: the network keeps the host
// address ("10.0.0.2/24" stays 10.0.0.2, not 10.0.0.0).
func parseCIDR(s string) (*net.IPNet, error) {
	ip, n, err := net.ParseCIDR(s)
	if err != nil {
		return nil, err
	}
	n.IP = ip
	return n, nil
}

// cidrText formats a request address as the daemon prints the one it holds.
func cidrText(s string) string {
	if s == "" {
		return ""
	}
	if n, err := parseCIDR(s); err == nil {
		return n.String()
	}
	return s
}

func macText(s string) string {
	if s == "" {
		return ""
	}
	if m, err := net.ParseMAC(s); err == nil {
		return m.String()
	}
	return s
}

// validateInterface checks a request interface the daemon built from parsed
// values, so each non-empty field must parse.
func validateInterface(i *EndpointInterface) error {
	if i.Address != "" {
		if _, err := parseCIDR(i.Address); err != nil {
			return fmt.Errorf("Interface.Address: %w", err)
		}
	}
	if i.AddressIPv6 != "" {
		if _, err := parseCIDR(i.AddressIPv6); err != nil {
			return fmt.Errorf("Interface.AddressIPv6: %w", err)
		}
	}
	if i.MacAddress != "" {
		if _, err := net.ParseMAC(i.MacAddress); err != nil {
			return fmt.Errorf("Interface.MacAddress: %w", err)
		}
	}
	return nil
}

// validateIPAMData checks pools the daemon built from parsed values.
func validateIPAMData(field string, list []*IPAMData) error {
	for i, d := range list {
		if d == nil {
			return fmt.Errorf("%s[%d] is null", field, i)
		}
		if _, err := parseCIDR(d.Pool); err != nil {
			return fmt.Errorf("%s[%d].Pool: %w", field, i, err)
		}
		if d.Gateway != "" {
			if _, err := parseCIDR(d.Gateway); err != nil {
				return fmt.Errorf("%s[%d].Gateway (want ip/len): %w", field, i, err)
			}
		}
		for k, a := range d.AuxAddresses {
			if _, err := parseCIDR(a); err != nil {
				return fmt.Errorf("%s[%d].AuxAddresses[%q]: %w", field, i, k, err)
			}
		}
	}
	return nil
}
