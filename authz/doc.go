// Package authz is the Docker authorization plugin protocol ("authz"): the
// wire types, the Plugin interface an authorization plugin implements, the
// Handler that serves a Plugin through a plugin.Server, and the Client that
// calls one exactly the way dockerd (pkg/authorization) does.
//
// Quirks of the protocol this package hides (numbers refer to the gotchas
// of the protocol reference):
//
//   - The kind is "authz", lowercase, unlike every other kind (G20); the
//     methods are AuthZPlugin.AuthZReq and AuthZPlugin.AuthZRes.
//   - The JSON keys are RequestUri and RequestHeaders, not RequestURI and
//     RequestHeader as the docs say; bodies are []byte, so base64 strings;
//     each peer certificate is a base64 string of its PEM text (G14).
//     Request and PeerCertificate take care of all three.
//   - On a 200 the daemon ignores "Err": only Allow and Msg count, so an
//     answer {"Allow": true, "Err": "..."} lets the request through. The
//     Handler never sends that: a Plugin error, or a Response with Err set,
//     is answered with a non-200 and {"Err": msg}, which the daemon turns
//     into a failed (denied, HTTP 500) API call. The Client, like the
//     daemon, returns a *plugin.StatusError for non-200 answers and no
//     error for a 200 whatever its Err. Verdict builds the daemon's final
//     messages ("authorization denied by plugin P: msg", "plugin P failed
//     with error: ...").
//   - Authorization fails closed (G14): any plugin error denies the API
//     call, including a request the Handler rejects as malformed (400).
//   - AuthZRes is also called when the daemon's handler failed, for hijacked
//     and streaming endpoints (status 0, empty or partial body), and its
//     deny is then ignored: only AuthZReq can reliably block.
package authz
