// Package bridge is dockplug-net: a libnetwork remote network driver that
// does for a user what docker's built-in bridge driver does, from a plugin
// that may be restarted (or killed) at any moment.
//
//   - One Linux bridge per network, carrying the gateway addresses IPAM
//     chose; one veth pair per endpoint, made at Join, whose container end
//     (SrcName) the daemon moves into the sandbox.
//   - Outbound: forwarding on the bridge and masquerade of the network's
//     IPv4 subnets when they leave through another interface; none of it
//     for --internal networks, which are also fenced off in the forward
//     hook. icc=false isolates the bridge ports from each other
//     (bridge port isolation, in the kernel's data plane).
//   - Published ports (com.docker.network.portmap) become DNAT rules,
//     programmed at ProgramExternalConnectivity (sent to the gateway
//     endpoint on both engines). The host port is reserved with a bound,
//     non-listening socket, so a taken port is a clear error and nothing
//     else can take it while the mapping lives.
//   - Every packet rule lives in one nftables table of the plugin's own
//     (family inet, named after the plugin), rebuilt atomically from the
//     state on every change. Other tables are never touched.
//   - State (networks, endpoints, port maps) is in bbolt and durable before
//     each reply, because libnetwork never replays CreateNetwork or
//     CreateEndpoint (G8). At start the driver reconciles with the kernel:
//     it recreates bridges, addresses and rules its records call for and
//     deletes links carrying its alias that no record claims. The data
//     plane is the kernel's, so kill -9 never interrupts containers.
//   - It never calls the Docker API.
package bridge
