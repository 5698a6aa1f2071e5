// Package oauth is the gateway's side of MCP authorization as an OAuth
// 2.0 protected resource: the RFC 9728 metadata that tells MCP clients
// which authorization server (Better-Auth's OAuth provider) issues tokens
// for it, and where that metadata is.
package oauth

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"

	"github.com/caddy-betterauth/caddy-betterauth/betterauth"
)

// WellKnown is the RFC 9728 well-known path segment.
const WellKnown = "/.well-known/oauth-protected-resource"

// Resource describes the protected resource: the MCP server the gateway
// stands in front of.
type Resource struct {
	// URL is the resource identifier: exactly the URL MCP clients call
	// (https://mcp.example.com/mcp), which tokens must be issued for.
	URL string
	// AuthorizationServers are the issuers that hand out its tokens
	// (Better-Auth's OAuth provider: its issuer URL).
	AuthorizationServers []string
	// Scopes are the scopes the resource understands; offline_access,
	// which is the authorization server's business, is never listed.
	Scopes []string

	metadata []byte
	url      string   // where the metadata is
	paths    []string // the paths that serve it
}

// NewResource checks r and prepares its metadata.
func NewResource(r Resource) (*Resource, error) {
	u, err := url.Parse(r.URL)
	if err != nil || !u.IsAbs() || u.Host == "" || u.Fragment != "" || u.RawQuery != "" {
		return nil, fmt.Errorf("oauth: resource %q must be an absolute URL without query or fragment", r.URL)
	}
	if u.Scheme != "https" && !isLoopback(u.Hostname()) {
		return nil, fmt.Errorf("oauth: resource %q must be https (http only for localhost)", r.URL)
	}
	if len(r.AuthorizationServers) == 0 {
		return nil, errors.New("oauth: an authorization server (issuer) is required")
	}
	for _, s := range r.AuthorizationServers {
		if a, err := url.Parse(s); err != nil || !a.IsAbs() || a.Host == "" {
			return nil, fmt.Errorf("oauth: issuer %q must be an absolute URL", s)
		}
	}
	for _, s := range r.Scopes {
		if !betterauth.IsScopeToken(s) {
			return nil, fmt.Errorf("oauth: scope %q is not a scope token", s)
		}
	}
	r.Scopes = slices.DeleteFunc(slices.Clone(r.Scopes), func(s string) bool { return s == "offline_access" })
	path := strings.TrimSuffix(u.Path, "/")
	r.paths = []string{WellKnown}
	if path != "" {
		r.paths = append([]string{WellKnown + path}, r.paths...)
	}
	// RFC 9728 §3.1, with the same path Serves answers: a trailing (or
	// lone) slash of the resource is not part of it.
	r.url = (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: WellKnown + path}).String()
	if r.metadata, err = json.Marshal(struct {
		Resource               string   `json:"resource"`
		AuthorizationServers   []string `json:"authorization_servers"`
		ScopesSupported        []string `json:"scopes_supported,omitempty"`
		BearerMethodsSupported []string `json:"bearer_methods_supported"`
	}{r.URL, r.AuthorizationServers, r.Scopes, []string{"header"}}); err != nil {
		return nil, err
	}
	return &r, nil
}

func isLoopback(host string) bool {
	return host == "localhost" || host == "127.0.0.1" || host == "::1"
}

// MetadataURL is where the metadata is served, as RFC 9728 §3.1 builds
// it: the well-known segment between the resource's host and its path.
// It goes in WWW-Authenticate challenges (resource_metadata).
func (r *Resource) MetadataURL() string { return r.url }

// Metadata is the RFC 9728 document, JSON.
func (r *Resource) Metadata() []byte { return r.metadata }

// Serves reports whether a request path asks for the metadata: the
// well-known path with the resource's path after it, or alone.
func (r *Resource) Serves(path string) bool { return slices.Contains(r.paths, path) }
