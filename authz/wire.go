package authz

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
)

// Implements is the string authorization plugins list in Plugin.Activate:
// lowercase (G20).
const Implements = "authz"

// Full method names, as posted by the daemon.
const (
	MethodAuthZReq = "AuthZPlugin.AuthZReq"
	MethodAuthZRes = "AuthZPlugin.AuthZRes"
)

// Request is what the daemon sends to both methods; the Response* fields
// are only set for AuthZRes.
type Request struct {
	// User is the CN of the client's TLS certificate; empty over the unix
	// socket.
	User string `json:"User,omitempty"`
	// UserAuthNMethod is "TLS" when User is set.
	UserAuthNMethod string `json:"UserAuthNMethod,omitempty"`
	RequestMethod   string `json:"RequestMethod,omitempty"`
	// RequestURI is the raw URI as the client sent it (path, with or
	// without the /v1.xx prefix, and query). Key: RequestUri (G14).
	RequestURI string `json:"RequestUri,omitempty"`
	// RequestBody is only set for application/json bodies (base64 on the
	// wire).
	RequestBody []byte `json:"RequestBody,omitempty"`
	// RequestHeaders holds the last value of each header, without
	// Authorization, X-Registry-Auth and X-Registry-Config. Key:
	// RequestHeaders (G14).
	RequestHeaders          map[string]string `json:"RequestHeaders,omitempty"`
	RequestPeerCertificates []PeerCertificate `json:"RequestPeerCertificates,omitempty"`
	// ResponseStatusCode is 0 for hijacked or already flushed responses.
	ResponseStatusCode int               `json:"ResponseStatusCode,omitempty"`
	ResponseBody       []byte            `json:"ResponseBody,omitempty"`
	ResponseHeaders    map[string]string `json:"ResponseHeaders,omitempty"`
}

// PeerCertificate is a client TLS certificate. On the wire it is a JSON
// string holding the base64 of the certificate's PEM text.
type PeerCertificate struct {
	*x509.Certificate
}

// MarshalJSON encodes the certificate as the daemon does.
func (pc PeerCertificate) MarshalJSON() ([]byte, error) {
	if pc.Certificate == nil {
		return nil, errors.New("authz: PeerCertificate without certificate")
	}
	return json.Marshal(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: pc.Raw}))
}

// UnmarshalJSON decodes a certificate. Unlike the daemon's own decoder it
// returns an error, rather than panicking, when there is no PEM block.
func (pc *PeerCertificate) UnmarshalJSON(b []byte) error {
	var text []byte
	if err := json.Unmarshal(b, &text); err != nil {
		return fmt.Errorf("peer certificate: %w", err)
	}
	block, _ := pem.Decode(text)
	if block == nil {
		return errors.New("peer certificate: no PEM block")
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return fmt.Errorf("peer certificate: %w", err)
	}
	pc.Certificate = c
	return nil
}

// Response is a plugin's decision.
type Response struct {
	Allow bool `json:"Allow"`
	// Msg is shown to the user on a deny: "authorization denied by plugin
	// P: <Msg>".
	Msg string `json:"Msg,omitempty"`
	// Err is ignored by the daemon on a 200 answer. Plugins should return
	// an error instead; the Handler turns a set Err into a non-200 answer.
	Err string `json:"Err,omitempty"`
}

// Allow returns an allowing decision.
func Allow() *Response { return &Response{Allow: true} }

// Deny returns a denying decision with the message the user sees.
func Deny(msg string) *Response { return &Response{Msg: msg} }
