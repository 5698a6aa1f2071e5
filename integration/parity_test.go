package integration

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caddy-betterauth/caddy-betterauth/betterauth"
	"github.com/caddy-betterauth/caddy-betterauth/internal/testenv"
)

// The standalone ext_authz server is the same gateway as the Caddy module:
// one block of options (PostgreSQL with the revocation triggers, sessions
// in Better-Auth's secondary storage, a shared Redis cache) given as JSON
// to the Caddy handler and to `betterauth-extauthz -config`, one table of
// requests answered alike by Caddy (through reverse_proxy), the standalone
// gRPC service and its HTTP mode, and revocations of each kind reaching the
// standalone server at once although it caches for an hour.
func TestStandaloneMatchesCaddy(t *testing.T) {
	t.Parallel()
	redisURL := testenv.Require(t, "TEST_REDIS_URL")
	appPrefix := "parity-app-" + strings.ToLower(rand.Text()[:8]) + ":"
	f := seedWithTriggers(t, testenv.SeedOptions{Redis: redisURL, RedisPrefix: appPrefix})
	if err := redisClient(t, redisURL).ConfigSet(context.Background(), "notify-keyspace-events", "Kg$x").Err(); err != nil {
		t.Fatal(err)
	}

	// The options, written once, placeholders and all.
	options := map[string]any{
		"database": "{env.DATABASE_URL}",
		"secret":   "{env.BETTER_AUTH_SECRET}",
		"cache":    map[string]any{"ttl": "1h"},
		"redis": map[string]any{"url": "{env.REDIS_URL}", "prefix": "parity-cache-" + strings.ToLower(rand.Text()[:8]) + ":",
			"timeout": "2s"},
		"secondary_storage": map[string]any{"url": "{env.REDIS_URL}", "prefix": appPrefix},
	}
	env := []string{"DATABASE_URL=" + f.DatabaseURL, "BETTER_AUTH_SECRET=" + testenv.Secret, "REDIS_URL=" + redisURL}

	gw, sa, up, grpcAddr, httpAddr := startBothGateways(t, options, env)

	// Start both gateways' watchers and wait until each listens: the
	// database triggers, the secondary storage's keyspace events and the
	// other gateways.
	send(t, gw, "/", h("X-Api-Key", "ba_start_the_watchers"))
	viaGRPC := grpcFront(t, grpcAddr)
	viaGRPC(t, h("X-Api-Key", "ba_start_the_watchers"))
	for _, p := range []*testenv.Caddy{gw, sa} {
		for _, line := range []string{"listening for revocations", "watching secondary storage for revocations", "listening for invalidations from other gateways"} {
			p.WaitForLog(t, line, 10*time.Second)
		}
	}

	fronts := map[string]frontEnd{"caddy": proxiedFront(gw, up), "grpc": viaGRPC, "http": httpFront("http://" + httpAddr)}
	u, k := f.Users, f.Keys
	cookie := url.QueryEscape(u.Alice.Signed)
	checkFronts(t, fronts, []frontCase{
		{"x-api-key", h("X-Api-Key", k.Valid.Key, "X-Auth-User-Id", "forged", "X_Auth_Role", "admin"), verdict{status: 200,
			set:     map[string]string{"x-auth-user-id": u.Alice.ID, "x-auth-method": "api_key", "x-auth-key-id": k.Valid.ID},
			removed: []string{"x-api-key", "x_auth_role"}}},
		{"bearer session from secondary storage", h("Authorization", "Bearer "+u.Alice.Signed), verdict{status: 200,
			set:     map[string]string{"x-auth-user-id": u.Alice.ID, "x-auth-method": "session", "x-auth-session-id": f.SessionIDs["alice"]},
			removed: []string{"authorization"}}},
		{"session cookie beside others", h("Cookie", "theme=dark; better-auth.session_token="+cookie+"; better-auth.session_data=e30"), verdict{status: 200,
			set: map[string]string{"x-auth-user-id": u.Alice.ID, "x-auth-method": "session"}, cookie: "theme=dark"}},
		{"x-api-key with a browser's session cookie", h("X-Api-Key", k.Valid.Key, "Cookie", "better-auth.session_token="+cookie), verdict{status: 200,
			set: map[string]string{"x-auth-method": "api_key"}, removed: []string{"cookie", "x-api-key"}}},
		{"missing", h("X-Auth-User-Id", "forged"), verdict{status: 401, code: "MISSING_CREDENTIAL", challenge: `Bearer realm="better-auth"`}},
		{"unknown key", h("X-Api-Key", "ba_nope"), verdict{status: 401, code: "INVALID_API_KEY", challenge: "Bearer realm"}},
		{"disabled key", h("X-Api-Key", k.Disabled.Key), verdict{status: 401, code: "KEY_DISABLED", challenge: "Bearer realm"}},
		{"expired key", h("X-Api-Key", k.Expired.Key), verdict{status: 401, code: "KEY_EXPIRED", challenge: "Bearer realm"}},
		{"exhausted key", h("X-Api-Key", k.Exhausted.Key), verdict{status: 429, code: "USAGE_EXCEEDED"}},
		{"banned user's key", h("X-Api-Key", k.Banned.Key), verdict{status: 403, code: "USER_BANNED"}},
		{"bad signature", h("Authorization", "Bearer "+u.Alice.Token+".AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="), verdict{status: 401, code: "INVALID_SESSION", challenge: "Bearer realm"}},
	})

	// Revocations reach the standalone server: a key disabled in the
	// database (the trigger), a session Better-Auth revokes in secondary
	// storage (keyspace events), a user banned (the trigger). Caddy answers
	// the same.
	for _, tc := range []struct {
		name   string
		hdr    http.Header
		revoke func()
		want   int
	}{
		{"key disabled", h("X-Api-Key", k.Valid2.Key), func() {
			testenv.Exec(t, f.DatabaseURL, `UPDATE apikey SET enabled = false WHERE id = $1`, k.Valid2.ID)
		}, 401},
		{"session revoked in secondary storage", h("Authorization", "Bearer "+u.Zoe.Signed), func() {
			testenv.RunSeed(t, f.DatabaseURL, []string{"REDIS_URL=" + redisURL, "REDIS_PREFIX=" + appPrefix}, "revoke-session", u.Zoe.Token)
		}, 401},
		{"user banned", h("X-Api-Key", k.Eve.Key), func() { testenv.RunSeed(t, f.DatabaseURL, nil, "ban-user", u.Eve.ID) }, 403},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for name, fe := range fronts {
				for range 2 { // the second answer comes from the cache
					if got := fe(t, tc.hdr); got.status != 200 {
						t.Fatalf("%s before the revocation: %d %s", name, got.status, got.code)
					}
				}
			}
			tc.revoke()
			since := time.Now()
			for name, fe := range fronts {
				for {
					if got := fe(t, tc.hdr); got.status == tc.want {
						break
					}
					if time.Since(since) > 2*time.Second {
						t.Fatalf("%s still allows %v after the revocation", name, time.Since(since))
					}
				}
				t.Logf("%s: refused %v after the revocation", name, time.Since(since).Round(time.Millisecond))
			}
		})
	}
}

// startBothGateways runs one block of options (placeholders and all) as a
// Caddy handler in front of a recording upstream, and as the standalone
// ext_authz server with its gRPC and HTTP listeners.
func startBothGateways(t *testing.T, options map[string]any, env []string) (gw, sa *testenv.Caddy, up *upstream, grpcAddr, httpAddr string) {
	t.Helper()
	up = newUpstream(t)
	port := testenv.FreePort(t)
	handler := maps.Clone(options)
	handler["handler"] = "better_auth"
	caddyConfig, _ := json.Marshal(map[string]any{
		"admin": map[string]any{"disabled": true},
		"apps": map[string]any{"http": map[string]any{"servers": map[string]any{"gw": map[string]any{
			"listen":          []string{fmt.Sprintf("127.0.0.1:%d", port)},
			"automatic_https": map[string]any{"disable": true},
			"routes": []any{map[string]any{"handle": []any{handler,
				map[string]any{"handler": "reverse_proxy", "upstreams": []any{map[string]any{"dial": up.addr()}}}}}},
		}}}},
	})
	gw = testenv.StartCaddyJSON(t, caddyConfig, env...)
	gw.URL = fmt.Sprintf("http://127.0.0.1:%d", port)

	grpcAddr = fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	httpAddr = fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	standalone := maps.Clone(options)
	standalone["grpc"], standalone["http"] = grpcAddr, httpAddr
	raw, _ := json.Marshal(standalone)
	path := filepath.Join(t.TempDir(), "gateway.json")
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	sa = testenv.StartProcess(t, "serving ext_authz HTTP", env, testenv.ExtAuthzBinary(t), "-config", path)
	return gw, sa, up, grpcAddr, httpAddr
}

// proxiedFront sends a request through a gateway process to the upstream,
// and reads what the upstream got.
func proxiedFront(gw *testenv.Caddy, up *upstream) frontEnd {
	return func(t *testing.T, hdr http.Header) verdict {
		r := send(t, gw, "/", hdr)
		seen := up.headers(r.id)
		if seen == nil {
			return denied(r.status, r.header, []byte(r.raw))
		}
		v := verdict{status: r.status, set: map[string]string{}}
		for name, vs := range seen {
			if betterauth.IsOwnedHeader(name) {
				v.set[strings.ToLower(name)] = vs[0]
			}
		}
		for name := range hdr {
			if _, ok := seen[http.CanonicalHeaderKey(name)]; !ok {
				v.removed = append(v.removed, strings.ToLower(name))
			}
		}
		slices.Sort(v.removed)
		v.cookie = strings.Join(seen.Values("Cookie"), "; ")
		return v
	}
}

// The standalone server fails closed as the Caddy handler does: with the
// app's secondary storage down, a session read there gets 503 from the gRPC
// service and the HTTP mode; with the database down, so does any key; and
// nothing is cached meanwhile, so both answer as before once they are back.
func TestStandaloneFailsClosed(t *testing.T) {
	t.Parallel()
	pg := testenv.StartPostgres(t)
	storage := testenv.StartRedis(t)
	f := testenv.Seed(t, testenv.SeedOptions{Server: pg.URL, Redis: storage.URL, RedisPrefix: "app:"})
	grpcAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	httpAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	raw, _ := json.Marshal(map[string]any{
		"database": "{env.DATABASE_URL}", "lookup_timeout": "2s",
		"secondary_storage": map[string]any{"url": "{env.APP_REDIS_URL}", "prefix": "app:"},
		"grpc":              grpcAddr, "http": httpAddr,
	})
	path := filepath.Join(t.TempDir(), "gateway.json")
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	testenv.StartProcess(t, "serving ext_authz HTTP", []string{"DATABASE_URL=" + f.DatabaseURL,
		"BETTER_AUTH_SECRET=" + testenv.Secret, "APP_REDIS_URL=" + storage.URL}, testenv.ExtAuthzBinary(t), "-config", path)
	fronts := map[string]frontEnd{"grpc": grpcFront(t, grpcAddr), "http": httpFront("http://" + httpAddr)}
	expect := func(what string, hdr http.Header, status int, code string) {
		t.Helper()
		for name, fe := range fronts {
			if got := fe(t, hdr); got.status != status || got.code != code {
				t.Errorf("%s, %s: %d %s, want %d %s", what, name, got.status, got.code, status, code)
			}
		}
	}
	key, session := h("X-Api-Key", f.Keys.Valid.Key), h("Authorization", "Bearer "+f.Users.Alice.Signed)
	expect("up", key, 200, "")

	storage.Stop(t)
	expect("secondary storage down", session, 503, "BACKEND_UNAVAILABLE")
	expect("secondary storage down, a key from the database", key, 200, "")
	pg.Stop(t)
	expect("database down", h("X-Api-Key", f.Keys.Valid2.Key), 503, "BACKEND_UNAVAILABLE")
	expect("database down, an unknown key", h("X-Api-Key", "ba_unknown_while_down"), 503, "BACKEND_UNAVAILABLE")

	pg.Start(t)
	expect("database back", h("X-Api-Key", f.Keys.Valid2.Key), 200, "")
	expect("database back, an unknown key", h("X-Api-Key", "ba_unknown_while_down"), 401, "INVALID_API_KEY")
}
