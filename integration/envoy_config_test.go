package integration

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	mcpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/mcp/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/caddy-betterauth/caddy-betterauth/internal/testenv"
)

// No Envoy binary can be installed here: the shipped configurations are
// decoded into Envoy's bootstrap proto instead, strictly (unknown fields
// fail), and validated with the generated rules.
func TestEnvoyExamplesDecode(t *testing.T) {
	t.Parallel()
	files, _ := filepath.Glob(filepath.Join(testenv.RepoRoot(), "examples", "envoy*.yaml"))
	if len(files) < 2 {
		t.Fatalf("examples: %v", files)
	}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var doc any
		if err := yaml.Unmarshal(raw, &doc); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		js, err := json.Marshal(doc)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		var b bootstrapv3.Bootstrap
		if err := protojson.Unmarshal(js, &b); err != nil {
			t.Fatalf("%s: not an Envoy bootstrap: %v", filepath.Base(f), err)
		}
		if err := b.ValidateAll(); err != nil {
			t.Fatalf("%s: %v", filepath.Base(f), err)
		}
		checkEnvoyHardening(t, filepath.Base(f), &b)
	}
}

// checkEnvoyHardening checks that every HTTP connection manager refuses
// header names with "_" (x_auth_user_role), and that an http_service
// ext_authz filter copies the gateway's identity headers and filtered Cookie
// upstream.
func checkEnvoyHardening(t *testing.T, name string, b *bootstrapv3.Bootstrap) {
	t.Helper()
	managers, httpServices := 0, 0
	for _, l := range b.GetStaticResources().GetListeners() {
		for _, fc := range l.GetFilterChains() {
			for _, f := range fc.GetFilters() {
				var hcm hcmv3.HttpConnectionManager
				if f.GetTypedConfig().UnmarshalTo(&hcm) != nil {
					continue
				}
				managers++
				if a := hcm.GetCommonHttpProtocolOptions().GetHeadersWithUnderscoresAction(); a != corev3.HttpProtocolOptions_REJECT_REQUEST {
					t.Errorf("%s: listener %s: headers_with_underscores_action = %v, want REJECT_REQUEST", name, l.GetName(), a)
				}
				mcpFilter := false
				for _, hf := range hcm.GetHttpFilters() {
					if hf.GetTypedConfig().MessageIs(&mcpv3.Mcp{}) {
						mcpFilter = true
					}
					var ext extauthzv3.ExtAuthz
					if mcpFilter && hf.GetTypedConfig().UnmarshalTo(&ext) == nil &&
						!slices.Contains(ext.GetMetadataContextNamespaces(), "envoy.filters.http.mcp") {
						// The MCP filter's reading is for ext_authz, after it.
						t.Errorf("%s: ext_authz after the MCP filter without metadata_context_namespaces: envoy.filters.http.mcp", name)
					}
					var ea extauthzv3.ExtAuthz
					if hf.GetTypedConfig().UnmarshalTo(&ea) != nil || ea.GetHttpService() == nil {
						continue
					}
					var exact, prefix []string
					for _, p := range ea.GetHttpService().GetAuthorizationResponse().GetAllowedUpstreamHeaders().GetPatterns() {
						if v := p.GetExact(); v != "" {
							exact = append(exact, v)
						}
						if v := p.GetPrefix(); v != "" {
							prefix = append(prefix, v)
						}
					}
					if !slices.Contains(exact, "cookie") || !slices.Contains(prefix, "x-auth-") {
						t.Errorf("%s: allowed_upstream_headers: exact %q, prefix %q; want cookie and x-auth-", name, exact, prefix)
					}
					httpServices++
				}
				if name == "envoy.yaml" && !mcpFilter {
					t.Errorf("%s: no MCP filter before ext_authz", name)
				}
			}
		}
	}
	if managers == 0 {
		t.Errorf("%s: no HTTP connection manager", name)
	}
	if strings.Contains(name, "http") && httpServices == 0 {
		t.Errorf("%s: no ext_authz http_service", name)
	}
}
