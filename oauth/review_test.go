package oauth

import (
	"net/url"
	"testing"
)

// Found in review: the metadata URL named in challenges must be one the handler
// serves. A resource with a trailing slash (https://mcp.example.com/mcp/,
// or the site root https://mcp.example.com/) is advertised at
// .../oauth-protected-resource/mcp/ (or .../oauth-protected-resource/),
// which Serves refuses: the client that follows the challenge gets a 401.
func TestMetadataURLIsServed(t *testing.T) {
	for _, res := range []string{"https://mcp.example.com/mcp/", "https://mcp.example.com/", "https://mcp.example.com/mcp"} {
		r, err := NewResource(Resource{URL: res, AuthorizationServers: []string{"https://app.example.com/api/auth"}})
		if err != nil {
			t.Fatal(err)
		}
		u, _ := url.Parse(r.MetadataURL())
		if !r.Serves(u.Path) {
			t.Errorf("resource %s: challenges name %s, whose path is not served", res, r.MetadataURL())
		}
	}
}

// Found in review: scopes are checked only for blanks, quotes and backslashes:
// control characters (CR, LF, NUL) and non-ASCII pass into the
// WWW-Authenticate challenge (RFC 6749 §3.3 scope-token is %x21 /
// %x23-5B / %x5D-7E). Go's server turns CR/LF into blanks, but the
// ext_authz front hands the value to Envoy as is.
func TestScopeTokenSyntax(t *testing.T) {
	for _, s := range []string{"a\r\nX-Injected:1", "a\x00b", "tools\tread", "é"} {
		if _, err := NewResource(Resource{URL: "https://mcp.example.com/mcp", AuthorizationServers: []string{"https://a.example"},
			Scopes: []string{s}}); err == nil {
			t.Errorf("scope %q accepted", s)
		}
	}
}
