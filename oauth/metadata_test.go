package oauth

import (
	"encoding/json"
	"reflect"
	"testing"
)

func TestResource(t *testing.T) {
	t.Parallel()
	r, err := NewResource(Resource{URL: "https://mcp.example.com/mcp", AuthorizationServers: []string{"https://app.example.com/api/auth"},
		Scopes: []string{"openid", "tools:read", "offline_access"}})
	if err != nil {
		t.Fatal(err)
	}
	if got := r.MetadataURL(); got != "https://mcp.example.com/.well-known/oauth-protected-resource/mcp" {
		t.Errorf("metadata URL %s", got)
	}
	for path, want := range map[string]bool{
		"/.well-known/oauth-protected-resource/mcp": true, "/.well-known/oauth-protected-resource": true,
		"/.well-known/oauth-protected-resource/other": false, "/mcp": false, "/.well-known/oauth-authorization-server": false,
	} {
		if r.Serves(path) != want {
			t.Errorf("Serves(%s) = %v", path, !want)
		}
	}
	var m map[string]any
	if err := json.Unmarshal(r.Metadata(), &m); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"resource": "https://mcp.example.com/mcp", "authorization_servers": []any{"https://app.example.com/api/auth"},
		"scopes_supported": []any{"openid", "tools:read"}, "bearer_methods_supported": []any{"header"}}
	if !reflect.DeepEqual(m, want) {
		t.Errorf("metadata %s", r.Metadata())
	}
	// A resource at the root is served at the bare well-known path.
	root, err := NewResource(Resource{URL: "http://localhost:8080", AuthorizationServers: []string{"http://localhost:3000/api/auth"}})
	if err != nil || root.MetadataURL() != "http://localhost:8080/.well-known/oauth-protected-resource" ||
		!root.Serves("/.well-known/oauth-protected-resource") {
		t.Errorf("root resource: %v %v", root, err)
	}
	for _, bad := range []Resource{
		{URL: "mcp.example.com/mcp", AuthorizationServers: []string{"https://a"}},
		{URL: "http://mcp.example.com/mcp", AuthorizationServers: []string{"https://a"}},
		{URL: "https://mcp.example.com/mcp?x=1", AuthorizationServers: []string{"https://a"}},
		{URL: "https://mcp.example.com/mcp"},
		{URL: "https://mcp.example.com/mcp", AuthorizationServers: []string{"/api/auth"}},
		{URL: "https://mcp.example.com/mcp", AuthorizationServers: []string{"https://a"}, Scopes: []string{`a"b`}},
	} {
		if _, err := NewResource(bad); err == nil {
			t.Errorf("accepted %+v", bad)
		}
	}
}
