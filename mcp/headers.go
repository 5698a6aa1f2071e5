package mcp

import (
	"encoding/base64"
	"strings"
	"unicode/utf8"
)

// Request headers of the Streamable HTTP transport, in canonical form.
const (
	HeaderProtocolVersion = "Mcp-Protocol-Version"
	HeaderMethod          = "Mcp-Method"
	HeaderName            = "Mcp-Name"
	HeaderSessionID       = "Mcp-Session-Id"
)

// HeadersVersion is the first protocol revision whose requests mirror their
// method and name in Mcp-Method and Mcp-Name, and whose servers must refuse
// a request whose headers and body disagree.
const HeadersVersion = "2026-07-28"

// RequiresHeaders reports whether requests of protocol version v must carry
// Mcp-Method and Mcp-Name: v is a revision date, 2026-07-28 or later. An
// absent or malformed version does not (servers take an absent one for
// 2025-03-26, and refuse a malformed one).
func RequiresHeaders(v string) bool { return isVersion(v) && v >= HeadersVersion }

// isVersion reports whether v is a revision date, YYYY-MM-DD.
func isVersion(v string) bool {
	if len(v) != 10 || v[4] != '-' || v[7] != '-' {
		return false
	}
	for i := 0; i < len(v); i++ {
		if i != 4 && i != 7 && (v[i] < '0' || v[i] > '9') {
			return false
		}
	}
	return true
}

// base64 sentinel of Mcp-Name and Mcp-Param-* values: case-sensitive.
const (
	sentinelPrefix = "=?base64?"
	sentinelSuffix = "?="
)

// DecodeName decodes an Mcp-Name value. "=?base64?<Base64>?=" (the
// sentinel exactly, in lower case) carries the Base64 of the name's UTF-8;
// any other value is the name itself, which holds no control character
// (clients encode names that do, and names with non-ASCII letters; UTF-8
// sent as it is, as the Go SDK does, is taken as it is).
func DecodeName(v string) (string, error) {
	name, err := decodeName(v)
	if err != nil {
		return "", err
	}
	return name, nil
}

func decodeName(v string) (string, *Error) {
	if enc, ok := strings.CutPrefix(v, sentinelPrefix); ok {
		if enc, ok = strings.CutSuffix(enc, sentinelSuffix); ok {
			raw, err := base64.StdEncoding.DecodeString(enc)
			if err != nil || !utf8.Valid(raw) {
				return "", errNameEncoding
			}
			return string(raw), nil
		}
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x20 && c != '\t' || c == 0x7f {
			return "", errNameEncoding
		}
	}
	if !utf8.ValidString(v) {
		return "", errNameEncoding
	}
	return v, nil
}

var (
	errHeaderRepeated  = badRequest(CodeHeaderMismatch, "Header mismatch: an MCP request header is given more than once")
	errNameEncoding    = badRequest(CodeHeaderMismatch, "Header mismatch: Mcp-Name is neither a plain value nor =?base64?...?=")
	errMethodMissing   = badRequest(CodeHeaderMismatch, "Header mismatch: the Mcp-Method header is missing")
	errNameMissing     = badRequest(CodeHeaderMismatch, "Header mismatch: the Mcp-Name header is missing")
	errMethodMismatch  = badRequest(CodeHeaderMismatch, "Header mismatch: Mcp-Method does not match the body's method")
	errNameMismatch    = badRequest(CodeHeaderMismatch, "Header mismatch: Mcp-Name does not match the body's params.name or params.uri")
	errBatchHeaders    = badRequest(CodeHeaderMismatch, "Header mismatch: a batch has no single method for Mcp-Method")
	errResponseHeaders = badRequest(CodeHeaderMismatch, "Header mismatch: Mcp-Method on a JSON-RPC response")
)

// requestHeaders are what a request's MCP headers say.
type requestHeaders struct {
	version, method, name string
	hasMethod, hasName    bool
	sessionID             string
	err                   *Error // repeated, or an undecodable Mcp-Name
}

// readHeaders reads the MCP headers of h (canonical names).
func (rh *requestHeaders) read(h map[string][]string) {
	*rh = requestHeaders{}
	var ok bool
	rh.version, _ = rh.one(h, HeaderProtocolVersion)
	rh.sessionID, _ = rh.one(h, HeaderSessionID)
	rh.method, rh.hasMethod = rh.one(h, HeaderMethod)
	var raw string
	if raw, ok = rh.one(h, HeaderName); ok {
		name, err := decodeName(raw)
		if err != nil && rh.err == nil {
			rh.err = err
		}
		rh.name, rh.hasName = name, true
	}
}

// one returns a header's single value, noting a repeated one.
func (rh *requestHeaders) one(h map[string][]string, name string) (string, bool) {
	vs := h[name]
	switch len(vs) {
	case 0:
		return "", false
	case 1:
		return vs[0], true
	}
	rh.err = errHeaderRepeated
	return vs[0], true
}

// requires reports whether the request's version requires the headers.
func (rh *requestHeaders) requires() bool { return RequiresHeaders(rh.version) }

// named reports whether method's requests carry Mcp-Name.
func named(method []byte) bool {
	switch string(method) {
	case "tools/call", "resources/read", "prompts/get":
		return true
	}
	return false
}

// check compares the headers with the body, as a server of 2026-07-28
// must: a header present says what the body says, and a version that
// requires them has them. Headers sent with an older version are checked
// too: whoever reads them must not be told something else than the
// upstream executes.
func (rh *requestHeaders) check(b *Body) *Error {
	if rh.err != nil {
		return rh.err
	}
	requires := rh.requires()
	if !rh.hasMethod && !rh.hasName && !requires {
		return nil
	}
	if b.Batch {
		if rh.hasMethod || rh.hasName {
			return errBatchHeaders
		}
		return nil // 2026-07-28 has no batches; its servers refuse them
	}
	m := &b.Messages[0]
	if m.Method == nil {
		if rh.hasMethod || rh.hasName {
			return errResponseHeaders
		}
		return nil
	}
	switch {
	case rh.hasMethod:
		if rh.method != string(m.Method) {
			return errMethodMismatch
		}
	case requires && m.ID != nil: // notifications' headers are left undefined
		return errMethodMissing
	}
	if !named(m.Method) {
		return nil
	}
	switch {
	case rh.hasName:
		if rh.name != string(b.TargetsOf(0)[0].Name) {
			return errNameMismatch
		}
	case requires && m.ID != nil:
		return errNameMissing
	}
	return nil
}
