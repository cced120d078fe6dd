// Package ipam is the IpamDriver protocol: the wire types, the Driver
// interface a remote IPAM plugin implements, the Handler that serves a
// Driver through a plugin.Server, and the Client that calls an IPAM plugin
// exactly the way dockerd (libnetwork's ipams/remote) does.
//
// Quirks of the protocol this package hides (numbers refer to the gotchas
// of the protocol reference):
//
//   - The error key of IPAM answers is "Error", not "Err" (G12). The daemon
//     reports a 200 answer with a non-empty "Error" as "remote: <Error>", but
//     treats a 200 answer carrying only "Err" as success. On any non-200 it
//     extracts "Err" only. The Handler therefore answers every failure with a
//     non-200 status and {"Err": msg}, which dockerd reads correctly; a
//     driver response whose Error field is set is turned into such a failure
//     rather than sent on a 200. The Client reproduces the daemon: a 200 with
//     "Error" is a *RemoteError, a 200 with only "Err" succeeds, and a
//     non-200 is a *plugin.StatusError whose text is "IpamDriver.X: <Err or
//     raw body>".
//   - GetCapabilities and GetDefaultAddressSpaces arrive with an empty body
//     (G19); the Handler ignores their bodies altogether. The other methods
//     always get a JSON object, so an empty body there (a daemon retry that
//     lost its body) is answered 400 and reaches no driver.
//   - The daemon only validates a few answers: RequestPool's Pool must parse
//     as a prefix, RequestAddress must return a non-empty Address in CIDR
//     form ("no address returned" otherwise). The Handler checks a driver's
//     answers for these, and for a non-empty PoolID (which every later call
//     needs), so a driver bug surfaces as a clear plugin error instead of a
//     puzzling daemon one. The Client applies the daemon's checks.
//   - Requested addresses are bare IPs, returned ones are CIDRs. The gateway
//     is either returned by RequestPool in Data[Gateway] (a CIDR) or asked
//     for with RequestAddress and Options[OptRequestAddressType] == Gateway.
//   - Every remote error is fatal to the daemon operation (G13): there is no
//     fall-through to another pool, and an aux-address error fails network
//     creation. Release calls may name addresses the driver never handed
//     out (a gateway that came from Data); their errors are only logged.
//   - If GetCapabilities fails, the daemon still registers the driver with
//     empty capabilities: Client.GetCapabilities returns the zero
//     capabilities together with the error.
package ipam
