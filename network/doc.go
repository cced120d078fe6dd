// Package network is the libnetwork remote network driver protocol
// ("NetworkDriver"): the wire types, the Driver interface a plugin
// implements, the Handler that serves it in a plugin.Server, and the Client
// that drives a plugin the way dockerd does. One set of types serves both
// ends, so they cannot drift apart.
//
// The quirks of the daemon (moby daemon/libnetwork/drivers/remote) this
// package hides, with the gotcha numbers of the protocol reference:
//
//   - GetCapabilities arrives with an empty body (G19); every other method
//     gets a JSON object, so the Handler answers an empty body there (a
//     daemon retry that lost its body) with a 400 that reaches no driver.
//     Every answer is at least {} because an empty 200 body is an error. Scope must be "local"
//     or "global", or the driver is silently not registered: the Handler
//     answers a driver's bad Scope with a 500 that says so.
//   - Errors: a non-200 answer reads "NetworkDriver.<Method>: <Err>"; a 200
//     carrying a non-empty "Err" reads "remote: <Err>". The Handler always
//     uses the first form; the Client understands both.
//   - Optional methods (DiscoverNew/Delete, AllocateNetwork/FreeNetwork,
//     GwAllocCheck, Program/RevokeExternalConnectivity) are optional
//     interfaces. Without one the method is not served and the daemon gets
//     the 404 it reads as "not implemented"; for Program/Revoke that 404 is
//     success, which also means a driver must not report a real failure of
//     those two with a 404.
//   - The CreateEndpoint interface rule (G10): the driver may only fill in
//     Interface fields the request left empty; returning a set field, even
//     unchanged, makes the daemon roll back with DeleteEndpoint.
//     CheckInterfaceRule reproduces the daemon's check and messages; the
//     Handler refuses such an answer with a 500 and rolls the endpoint
//     back itself, since after a 500 the daemon would not.
//   - Join answers are parsed after the call (bare-IP gateways, CIDR route
//     destinations) and a bad one is rolled back with Leave: see
//     CheckJoinResponse. InterfaceName.DstName and the ifname endpoint
//     option are ignored by daemons without moby/moby#52866 (G17); the link
//     SrcName must exist in the daemon's namespace when Join returns.
//   - Options: the user's -o options are nested as an object of strings
//     under OptionGeneric (GenericOptions); the --mac-address endpoint
//     option is base64 of 6 raw bytes, not "aa:bb:..." (MacAddressOption);
//     port maps carry protocol numbers (PortMapOption).
//   - EndpointOperInfo values stay plain JSON maps in the daemon: port
//     mappings reported there never reach docker ps (G11).
//   - Swarm: a Scope "global" driver gets AllocateNetwork/FreeNetwork on
//     managers, and fails network allocation without them. The Options it
//     returns replace the driver state the workers get in CreateNetwork;
//     returning nil drops the user's options (G18). Only node discovery
//     (type 1) is forwarded to DiscoverNew/DiscoverDelete.
//   - The daemon never re-sends CreateNetwork or CreateEndpoint after a
//     plugin restart (G8): drivers keep their own state.
//
// Request fields the daemon always sends (NetworkID, EndpointID,
// SandboxKey, well-formed addresses and pools) are checked by the Handler,
// which answers 400 if they are missing, so drivers get clean input.
package network
