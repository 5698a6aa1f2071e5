package integration

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
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
	}
}
