// Package volume implements the Docker Engine VolumeDriver plugin protocol
// ("VolumeDriver", reference section 3): the wire types, the Driver
// interface a volume plugin implements, the Handler that serves a Driver
// through plugin.Server, and the Client that drives any volume plugin the
// way dockerd does.
//
// The package hides these quirks of the protocol:
//
//   - Request keys are the daemon's Go field names (Name, Opts, ID); Opts
//     arrives as an object or null. The Handler rejects requests without the
//     fields the daemon always sends (Name; Name and ID for Mount and
//     Unmount) with 400, and gives drivers a non-nil Opts map.
//   - Errors: the Handler answers a driver error with a non-200 status and
//     {"Err": msg} (status from plugin.StatusOf). The daemon also accepts a
//     200 carrying a non-empty "Err"; the Client reproduces both paths
//     exactly: a 200 with Err is errors.New(Err), verbatim, a non-200 is a
//     *plugin.StatusError ("VolumeDriver.X: msg"). Err wins over any other
//     field of the same answer.
//   - CreatedAt is decoded by the daemon into a time.Time, so anything but
//     an RFC 3339 string (or no key at all) makes the whole Get or List
//     answer fail. Volume.CreatedAt is a time.Time, encoded RFC 3339 or
//     omitted when zero, so a driver cannot send a bad one; the Client
//     decodes it like the daemon and rejects bad ones.
//   - Get gates Create and decides existence (G2): the daemon treats ANY
//     Get error that is not a network error, and a null Volume, as "no such
//     volume", and then purges its own record of the volume (labels,
//     options, references), also at daemon start. A driver must therefore
//     return an error or a nil Volume from Get ONLY for volumes that really
//     do not exist; a temporary failure (backend unreachable) should be
//     answered with the last known volume instead. Client.Get returns
//     ErrNoSuchVolume for a null Volume, and IsNoSuchVolume applies the
//     daemon's whole rule to an error.
//   - Mount and Unmount carry an opaque ID which repeats: the daemon sends
//     one Unmount per successful Mount, reusing the ID for extra mounts of
//     a running container (docker cp). Drivers must count per (volume, ID),
//     not keep a set (G1). The Handler passes every call through, repeats
//     included.
//   - A null entry in a List answer crashes dockerd (nil dereference); the
//     Handler refuses to send one and the Client reports one as an error.
//     The Handler also fills an empty Volume.Name in a Get answer with the
//     requested name, since the daemon would name the volume "".
//   - Capabilities is optional: any error, an empty scope or an unknown one
//     means ScopeLocal; the scope is compared case-insensitively. Managed
//     plugins are asked for it before nearly every operation, so it must be
//     cheap.
//   - The daemon bounds each call: 2 minutes for Create and Mount, 1 minute
//     for the others (G4); the Client applies the same bounds.
package volume
