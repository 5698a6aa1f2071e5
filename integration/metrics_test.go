package integration

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddy-betterauth/caddy-betterauth/internal/testenv"
)

// After traffic through the Caddy handler (allowed keys and sessions, a
// denied key, an unknown one twice, no credential, a key disabled in
// Better-Auth), Caddy's admin /metrics shows every family with bounded
// labels, and no key, token, id or DSN; a config reload keeps the
// counters and does not fail on registration.
func TestMetricsOnCaddyAdminEndpoint(t *testing.T) {
	t.Parallel()
	f := seedWithTriggers(t, testenv.SeedOptions{})
	up := newUpstream(t)
	admin, port := testenv.FreePort(t), testenv.FreePort(t)
	caddyfile := fmt.Sprintf(`{
	admin 127.0.0.1:%d
	auto_https off
	persist_config off
	default_bind 127.0.0.1
}
http://127.0.0.1:%d {
	better_auth {
		database {env.DATABASE_URL}
		secret {env.BETTER_AUTH_SECRET}
		usage database
		rate_limit per_key {
			key  api_key
			rate 1000/1m
		}
	}
	reverse_proxy %s
}
`, admin, port, up.addr())
	gw := testenv.StartCaddyfile(t, caddyfile, "DATABASE_URL="+f.DatabaseURL, "BETTER_AUTH_SECRET="+testenv.Secret)
	gw.URL = fmt.Sprintf("http://127.0.0.1:%d", port)
	adminURL := fmt.Sprintf("http://127.0.0.1:%d", admin)

	expect := func(hdr http.Header, want int) {
		t.Helper()
		if r := send(t, gw, "/", hdr); r.status != want {
			t.Fatalf("%v: %d %s, want %d", hdr, r.status, r.raw, want)
		}
	}
	// The first lookup starts the listener, which purges the cache once
	// it listens.
	expect(h("X-Api-Key", "ba_start_the_listener"), 401)
	gw.WaitForLog(t, "listening for revocations", 10*time.Second)
	key := h("X-Api-Key", f.Keys.Valid.Key)
	expect(key, 200) // the database
	expect(key, 200) // memory
	expect(h("Authorization", "Bearer "+f.Users.Alice.Signed), 200)
	expect(h("X-Api-Key", f.Keys.Disabled.Key), 401)
	unknown := h("X-Api-Key", f.Keys.Valid.Key[:len(f.Keys.Valid.Key)-4]+"zzzz")
	expect(unknown, 401) // the database
	expect(unknown, 401) // negative
	expect(nil, 401)
	// Pushed by the trigger: the cached key is refused at once.
	revocable := h("X-Api-Key", f.Keys.Valid2.Key)
	expect(revocable, 200)
	testenv.RunSeed(t, f.DatabaseURL, nil, "disable-key", f.Keys.Valid2.ID, f.Users.Alice.ID)
	for start := time.Now(); send(t, gw, "/", revocable).status != 401; {
		if time.Since(start) > 5*time.Second {
			t.Fatal("the disabled key is still allowed")
		}
	}

	scrape := func() string {
		t.Helper()
		resp, err := http.Get(adminURL + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("/metrics: %d %v", resp.StatusCode, err)
		}
		return string(b)
	}
	body := scrape()
	atLeast := map[string]float64{
		`caddy_better_auth_decisions_total{code="OK",front_end="caddy",method="api_key"}`:              3,
		`caddy_better_auth_decisions_total{code="OK",front_end="caddy",method="session"}`:              1,
		`caddy_better_auth_decisions_total{code="KEY_DISABLED",front_end="caddy",method="api_key"}`:    2,
		`caddy_better_auth_decisions_total{code="INVALID_API_KEY",front_end="caddy",method="api_key"}`: 2,
		`caddy_better_auth_decisions_total{code="MISSING_CREDENTIAL",front_end="caddy",method=""}`:     1,
		`caddy_better_auth_cache_answers_total{tier="database"}`:                                       4,
		`caddy_better_auth_cache_answers_total{tier="memory"}`:                                         1,
		`caddy_better_auth_cache_answers_total{tier="negative"}`:                                       1,
		`caddy_better_auth_lookup_duration_seconds_count{backend="postgresql"}`:                        4,
		`caddy_better_auth_revocations_total{source="trigger"}`:                                        1,
		`caddy_better_auth_streams_ended_total{why="done"}`:                                            4,
		`caddy_better_auth_rate_limit_decisions_total{outcome="allowed"}`:                              4,
		`caddy_better_auth_usage_decisions_total{code="OK",mode="database"}`:                           3,
		`caddy_better_auth_streams_open`:                                                               0,
		`caddy_better_auth_lookup_errors_total{backend="postgresql",kind="timeout"}`:                   0,
	}
	values := parseExposition(body)
	for series, min := range atLeast {
		got, ok := values[series]
		if !ok {
			t.Errorf("%s missing from /metrics", series)
		} else if got < min {
			t.Errorf("%s = %v, want at least %v", series, got, min)
		}
	}
	for _, secret := range []string{f.Keys.Valid.Key, f.Keys.Valid2.Key, f.Keys.Disabled.Key, f.Keys.Valid.ID, f.Keys.Valid2.ID,
		f.Users.Alice.ID, f.Users.Alice.Token, f.Users.Alice.Signed, f.DatabaseURL, testenv.Secret} {
		if strings.Contains(body, secret) {
			t.Errorf("/metrics shows a secret or an id: %q", secret)
		}
	}
	for series := range values {
		if strings.HasPrefix(series, "caddy_better_auth_") && strings.Contains(series, "path") {
			t.Errorf("a path label: %s", series)
		}
	}

	// A reload makes a new registry: the same families register on it,
	// and the counters go on.
	before := values[`caddy_better_auth_decisions_total{code="OK",front_end="caddy",method="api_key"}`]
	req, _ := http.NewRequest(http.MethodPost, adminURL+"/load", bytes.NewBufferString(caddyfile))
	req.Header.Set("Content-Type", "text/caddyfile")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	msg, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("reload: %d %s", resp.StatusCode, msg)
	}
	expect(key, 200)
	after := parseExposition(scrape())[`caddy_better_auth_decisions_total{code="OK",front_end="caddy",method="api_key"}`]
	if after != before+1 {
		t.Errorf("after the reload: %v allowed keys, want %v", after, before+1)
	}
}

// The standalone ext_authz server serves the better_auth_* families on
// its -metrics listener, its decisions under front_end "ext_authz".
func TestMetricsOnStandaloneListener(t *testing.T) {
	t.Parallel()
	f := testenv.Seed(t, testenv.SeedOptions{})
	httpAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	metricsAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	sa := testenv.StartProcess(t, "serving ext_authz HTTP", []string{"DATABASE_URL=" + f.DatabaseURL, "BETTER_AUTH_SECRET=" + testenv.Secret},
		testenv.ExtAuthzBinary(t), "-grpc", "", "-http", httpAddr, "-metrics", metricsAddr)
	sa.WaitForLog(t, "serving metrics", 10*time.Second)
	front := httpFront("http://" + httpAddr)
	front(t, h("X-Api-Key", "ba_start_the_listener")) // which purges the cache once it listens
	sa.WaitForLog(t, "listening for revocations", 10*time.Second)
	for _, c := range []struct {
		hdr  http.Header
		want int
	}{{h("X-Api-Key", f.Keys.Valid.Key), 200}, {h("X-Api-Key", f.Keys.Valid.Key), 200}, {h("X-Api-Key", "ba_unknown_key"), 401}, {nil, 401}} {
		if v := front(t, c.hdr); v.status != c.want {
			t.Fatalf("%v: %d, want %d", c.hdr, v.status, c.want)
		}
	}
	resp, err := http.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	values := parseExposition(string(b))
	for series, min := range map[string]float64{
		`better_auth_decisions_total{code="OK",front_end="ext_authz",method="api_key"}`:              2,
		`better_auth_decisions_total{code="INVALID_API_KEY",front_end="ext_authz",method="api_key"}`: 2,
		`better_auth_decisions_total{code="MISSING_CREDENTIAL",front_end="ext_authz",method=""}`:     1,
		`better_auth_cache_answers_total{tier="memory"}`:                                             1,
		`better_auth_lookup_duration_seconds_count{backend="postgresql"}`:                            2,
		`go_goroutines`: 1,
	} {
		if got, ok := values[series]; !ok || got < min {
			t.Errorf("%s = %v (present: %v), want at least %v", series, got, ok, min)
		}
	}
	for _, secret := range []string{f.Keys.Valid.Key, f.Keys.Valid.ID, f.Users.Alice.ID, f.DatabaseURL} {
		if strings.Contains(string(b), secret) {
			t.Errorf("/metrics shows a secret or an id: %q", secret)
		}
	}
}

var sample = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?) (\S+)`)

// parseExposition reads the Prometheus text format: series to value.
func parseExposition(body string) map[string]float64 {
	out := map[string]float64{}
	for line := range strings.SplitSeq(body, "\n") {
		if m := sample.FindStringSubmatch(line); m != nil {
			if v, err := strconv.ParseFloat(m[2], 64); err == nil {
				out[m[1]] = v
			}
		}
	}
	return out
}
