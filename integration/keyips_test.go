package integration

import (
	"context"
	"crypto/rand"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/caddy-betterauth/caddy-betterauth/internal/testenv"
)

// Per-key allow-lists (api_key_allowed_ips_field) through the real Caddy
// binary, its handler and its ext_authz listeners, on keys real
// Better-Auth created with metadata, kept in PostgreSQL, in a SQLite file
// and in secondary storage: the listed key passes from a listed address
// (named by a trusted proxy, or Envoy's source address) and nowhere else, a
// key without the field passes from anywhere, a malformed list refuses
// every address, and a route without the option reads no metadata. On
// PostgreSQL, an app changing the key's metadata with updateApiKey takes
// effect at once through the revocation triggers, although the gateway
// caches for an hour.
func TestKeyAllowedIPs(t *testing.T) {
	t.Parallel()
	redisURL := testenv.Require(t, "TEST_REDIS_URL")
	appPrefix := "keyip-" + strings.ToLower(rand.Text()[:8]) + ":"
	for _, tc := range []struct {
		name  string
		seed  testenv.SeedOptions
		extra string
		env   []string
	}{
		{"postgres", testenv.SeedOptions{}, "", nil},
		{"sqlite", testenv.SeedOptions{SQLite: true}, "", nil},
		{"secondary storage", testenv.SeedOptions{Redis: redisURL, RedisPrefix: appPrefix, KeysInRedis: true},
			"secondary_storage {env.APP_REDIS_URL} {\n\t\t\t\tprefix " + appPrefix + "\n\t\t\t\tapi_keys storage\n\t\t\t}",
			[]string{"APP_REDIS_URL=" + redisURL}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var f *testenv.Fixture
			if tc.seed.SQLite || tc.seed.Redis != "" {
				f = testenv.Seed(t, tc.seed)
			} else {
				f = seedWithTriggers(t, tc.seed)
			}
			up := newUpstream(t)
			grpcAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
			httpAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
			options := fmt.Sprintf(`database {env.DATABASE_URL}
			secret {env.BETTER_AUTH_SECRET}
			cache {
				ttl 1h
			}
			%s`, tc.extra)
			gw := testenv.StartCaddy(t, fmt.Sprintf(`servers {
		trusted_proxies static 127.0.0.1/32
	}
	better_auth {
		%s
		api_key_allowed_ips_field allowedIps
		grpc %s
		http %s
	}`, options, grpcAddr, httpAddr), fmt.Sprintf(`
	route /restricted/* {
		better_auth {
			%[1]s
			api_key_allowed_ips_field allowedIps
		}
		reverse_proxy %[2]s
	}
	route /open/* {
		better_auth {
			%[1]s
		}
		reverse_proxy %[2]s
	}`, options, up.addr()),
				append([]string{"DATABASE_URL=" + f.DatabaseURL, "BETTER_AUTH_SECRET=" + testenv.Secret}, tc.env...)...)
			gw.WaitForLog(t, "serving ext_authz HTTP", 10*time.Second)
			if !tc.seed.SQLite && tc.seed.Redis == "" {
				send(t, gw, "/restricted/x", h("X-Api-Key", "ba_start_the_watchers"))
				gw.WaitForLog(t, "listening for revocations", 10*time.Second)
			}
			check := envoyCheck(t, grpcAddr)

			listed, malformed, plain := f.Keys.IPListed.Key, f.Keys.IPMalformed.Key, f.Keys.Valid.Key
			cases := []struct {
				name, path, key, client string // client "": the proxy's own address (Caddy), no source (Envoy)
				status                  int
			}{
				{"listed key, from a listed prefix", "/restricted/x", listed, "10.1.2.3", 200},
				{"listed key, from a listed address", "/restricted/x", listed, "203.0.113.7", 200},
				{"listed key, from another address", "/restricted/x", listed, "203.0.113.8", 403},
				{"listed key, from an IPv6 address", "/restricted/x", listed, "2001:db8::1", 403},
				{"listed key, from an address nobody names", "/restricted/x", listed, "", 403},
				{"a key without the field, from anywhere", "/restricted/x", plain, "198.51.100.1", 200},
				{"a key without the field, from an address nobody names", "/restricted/x", plain, "", 200},
				{"a malformed list, from the address it meant", "/restricted/x", malformed, "10.1.2.3", 403},
				{"a malformed list, from elsewhere", "/restricted/x", malformed, "198.51.100.1", 403},
				{"without the option: metadata not read", "/open/x", listed, "203.0.113.8", 200},
				{"without the option, malformed", "/open/x", malformed, "198.51.100.1", 200},
			}
			for _, c := range cases {
				hdr := h("X-Api-Key", c.key)
				if c.client != "" {
					hdr.Set("X-Forwarded-For", c.client)
				}
				r := send(t, gw, c.path, hdr)
				if r.status != c.status || (c.status == 403 && r.body.Code != "IP_NOT_ALLOWED") {
					t.Errorf("caddy: %s: %d %s, want %d", c.name, r.status, r.raw, c.status)
				}
				if reached := up.headers(r.id) != nil; reached != (c.status == 200) {
					t.Errorf("caddy: %s: reached the upstream: %v", c.name, reached)
				}
				if c.status == 200 && c.path == "/restricted/x" && up.headers(r.id).Get("X-Auth-Key-Id") == "" {
					t.Errorf("caddy: %s: no key id upstream", c.name)
				}
				if c.path != "/restricted/x" {
					continue
				}
				// Envoy's gRPC ext_authz: the client is the request's source.
				if status, code := check(c.key, c.client); status != c.status || (c.status == 403 && code != "IP_NOT_ALLOWED") {
					t.Errorf("ext_authz gRPC: %s: %d %s, want %d", c.name, status, code, c.status)
				}
			}
			// The HTTP mode sees its caller (127.0.0.1), never a header.
			for _, c := range []struct {
				key    string
				status int
			}{{listed, 403}, {plain, 200}, {malformed, 403}} {
				req, _ := http.NewRequest(http.MethodGet, "http://"+httpAddr+"/", nil)
				req.Header.Set("X-Api-Key", c.key)
				req.Header.Set("X-Forwarded-For", "10.1.2.3")
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != c.status {
					t.Errorf("ext_authz HTTP: %s: %d, want %d", c.key[:8], resp.StatusCode, c.status)
				}
			}
			// The malformed list is logged, once, with the key's id.
			gw.WaitForLog(t, f.Keys.IPMalformed.ID, 10*time.Second)
			if n := strings.Count(gw.Logs(), "allow-list of client addresses is malformed"); n != 1 {
				t.Errorf("the malformed list was logged %d times, want once", n)
			}
			if strings.Contains(gw.Logs(), malformed) {
				t.Error("the log holds the key")
			}

			if tc.seed.SQLite || tc.seed.Redis != "" {
				return
			}
			// The app moves the key to another network: the trigger revokes
			// it, and the new list holds at once, in both front ends.
			testenv.RunSeed(t, f.DatabaseURL, nil, "set-key-metadata", f.Keys.IPListed.ID, f.Users.Alice.ID,
				`{"plan":"pro","allowedIps":["198.51.100.0/24"]}`)
			since := time.Now()
			for {
				from := func(client string) int {
					return send(t, gw, "/restricted/x", h("X-Api-Key", listed, "X-Forwarded-For", client)).status
				}
				if from("10.1.2.3") == 403 && from("198.51.100.1") == 200 {
					break
				}
				if time.Since(since) > 2*time.Second {
					t.Fatalf("the old list still holds two seconds after updateApiKey")
				}
			}
			if status, _ := check(listed, "10.1.2.3"); status != 403 {
				t.Errorf("ext_authz gRPC after the update: %d from the old network", status)
			}
			if status, _ := check(listed, "198.51.100.1"); status != 200 {
				t.Errorf("ext_authz gRPC after the update: %d from the new network", status)
			}
		})
	}
}

// envoyCheck calls an ext_authz gRPC service as Envoy does, with the
// request's source address (none for ""): it returns the HTTP status and,
// on a denial, the body's code.
func envoyCheck(t *testing.T, addr string) func(key, client string) (int, string) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	client := authv3.NewAuthorizationClient(conn)
	return func(key, from string) (int, string) {
		t.Helper()
		attrs := &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: "GET", Path: "/", Headers: map[string]string{"x-api-key": key}}}}
		if from != "" {
			attrs.Source = &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
				SocketAddress: &corev3.SocketAddress{Address: from, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 50000}}}}}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		resp, err := client.Check(ctx, &authv3.CheckRequest{Attributes: attrs})
		if err != nil {
			t.Fatal(err)
		}
		if d := resp.GetDeniedResponse(); d != nil {
			v := denied(int(d.GetStatus().GetCode()), http.Header{}, []byte(d.GetBody()))
			return v.status, v.code
		}
		return 200, ""
	}
}
