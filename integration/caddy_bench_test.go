package integration

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/caddy-betterauth/caddy-betterauth"
	"github.com/caddy-betterauth/caddy-betterauth/internal/testenv"
)

// BenchmarkCaddy measures whole Caddy servers in process: a request goes
// through Caddy's server, its route, reverse_proxy and a loopback upstream
// (in this process too), and back. plain is a bare reverse_proxy;
// static_headers sets the six identity headers better_auth would set, with
// request_header; better_auth checks the key and sets them. plain to
// static_headers is the cost of carrying the identity upstream, whoever sets
// it; static_headers to better_auth is the handler's own. Compare with
// benchstat:
//
//	go test -run '^$' -bench Caddy -count 10 ./integration/ | tee caddy.txt
//	benchstat -col /gateway caddy.txt
func BenchmarkCaddy(b *testing.B) {
	f := testenv.Seed(b, testenv.SeedOptions{})
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("ok"))
	}))
	defer upstream.Close()
	up := strings.TrimPrefix(upstream.URL, "http://")
	b.Setenv("DATABASE_URL", f.DatabaseURL)
	b.Setenv("BETTER_AUTH_SECRET", testenv.Secret)
	caddyfile := fmt.Sprintf(`{
	admin off
	auto_https off
	persist_config off
	default_bind 127.0.0.1
	log default {
		level ERROR
	}
}
http://127.0.0.1:%d {
	reverse_proxy %s
}
http://127.0.0.1:%d {
	# Control: the identity headers better_auth would set, set statically.
	request_header X-Auth-User-Id %s
	request_header X-Auth-User-Email alice@example.com
	request_header X-Auth-User-Name Alice
	request_header X-Auth-User-Role user
	request_header X-Auth-Method api_key
	request_header X-Auth-Key-Id %s
	request_header -X-Api-Key
	reverse_proxy %s
}
http://127.0.0.1:%d {
	better_auth {
		database {env.DATABASE_URL}
		secret {env.BETTER_AUTH_SECRET}
	}
	reverse_proxy %s
}`, testenv.FreePort(b), up,
		testenv.FreePort(b), f.Users.Alice.ID, f.Keys.Valid.ID, up,
		testenv.FreePort(b), up)
	adapted := loadCaddy(b, caddyfile)
	var plain, headers, gated *caddyhttp.Server
	for srv, raw := range adapted {
		switch {
		case strings.Contains(raw, `"better_auth"`):
			gated = srv
		case strings.Contains(raw, `"X-Auth-User-Id"`):
			headers = srv
		default:
			plain = srv
		}
	}
	if plain == nil || headers == nil || gated == nil {
		b.Fatal("servers not found")
	}
	for _, bc := range []struct {
		name string
		srv  *caddyhttp.Server
	}{{"gateway=plain", plain}, {"gateway=static_headers", headers}, {"gateway=better_auth", gated}} {
		srv := bc.srv
		b.Run(bc.name, func(b *testing.B) {
			req := httptest.NewRequest(http.MethodGet, "http://127.0.0.1/mcp", nil)
			req.Header.Set("X-Api-Key", f.Keys.Valid.Key)
			check := httptest.NewRecorder()
			srv.ServeHTTP(check, req.Clone(req.Context()))
			if check.Code != 200 || check.Body.String() != "ok" {
				b.Fatalf("%s: %d %s", bc.name, check.Code, check.Body)
			}
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					w := httptest.NewRecorder()
					srv.ServeHTTP(w, req.Clone(req.Context()))
				}
			})
		})
	}
}

// loadCaddy runs a Caddyfile in this process until the benchmark ends, and
// returns its servers with their adapted JSON, by which callers tell them
// apart (the adapter names servers by listener, not by their order in the
// file).
func loadCaddy(b *testing.B, caddyfile string) map[*caddyhttp.Server]string {
	b.Helper()
	cfg, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(caddyfile), nil)
	if err != nil {
		b.Fatal(err)
	}
	if err := caddy.Load(cfg, true); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { caddy.Stop() })
	app, err := caddy.ActiveContext().App("http")
	if err != nil {
		b.Fatal(err)
	}
	var adapted struct {
		Apps struct {
			HTTP struct {
				Servers map[string]json.RawMessage `json:"servers"`
			} `json:"http"`
		} `json:"apps"`
	}
	if err := json.Unmarshal(cfg, &adapted); err != nil {
		b.Fatal(err)
	}
	out := map[*caddyhttp.Server]string{}
	for name, raw := range adapted.Apps.HTTP.Servers {
		out[app.(*caddyhttp.App).Servers[name]] = string(raw)
	}
	return out
}
