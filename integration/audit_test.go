package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/caddy-betterauth/caddy-betterauth/internal/testenv"
)

// The audit trail through the real Caddy: the shipped way to route the
// audit logger to a file of its own, one event per decision with who and
// why and never a secret, and the same events in the database table
// install-audit creates, including those decided while PostgreSQL was
// down, which wait in the queue, hold no request up, and land once it is
// back.
func TestAuditTrail(t *testing.T) {
	t.Parallel()
	pg := testenv.StartPostgres(t)
	f := testenv.Seed(t, testenv.SeedOptions{Server: pg.URL})
	env := []string{"DATABASE_URL=" + f.DatabaseURL}
	if out, errOut, code := runCLI(t, "", env, "install-audit", "--print"); code != 0 || !strings.Contains(out, `CREATE TABLE IF NOT EXISTS "caddy_betterauth"."audit_events"`) {
		t.Fatalf("install-audit --print: exit %d\n%s%s", code, out, errOut)
	}
	for range 2 { // idempotent
		if out, errOut, code := runCLI(t, "", env, "install-audit"); code != 0 {
			t.Fatalf("install-audit: exit %d\n%s%s", code, out, errOut)
		}
	}

	logFile := filepath.Join(t.TempDir(), "audit.log")
	up := newUpstream(t)
	gw := testenv.StartCaddy(t, fmt.Sprintf(`log audit {
		output file %s
		format json
		include http.handlers.better_auth.audit
	}
	log default {
		exclude http.handlers.better_auth.audit
	}`, logFile), fmt.Sprintf(`
	handle /metrics {
		metrics
	}
	better_auth {
		database {env.DATABASE_URL}
		secret {env.BETTER_AUTH_SECRET}
		audit all {
			database
		}
		cache {
			ttl 1h
		}
	}
	reverse_proxy %s`, up.addr()), "DATABASE_URL="+f.DatabaseURL, "BETTER_AUTH_SECRET="+testenv.Secret)

	u, k := f.Users, f.Keys
	secrets := []string{k.Valid.Key, k.Banned.Key, u.Alice.Signed, u.Alice.Token, "ba_unknown_audit_key"}
	type want struct {
		path, decision, code, method, user, key, session string
	}
	cases := []struct {
		hdr  map[string][]string
		want want
	}{
		{h("X-Api-Key", k.Valid.Key), want{"/tools?token=x", "allow", "OK", "api_key", u.Alice.ID, k.Valid.ID, ""}},
		{h("X-Api-Key", "ba_unknown_audit_key"), want{"/unknown", "deny", "INVALID_API_KEY", "api_key", "", "", ""}},
		{h("Cookie", "better-auth.session_token="+url.QueryEscape(u.Alice.Signed)), want{"/session", "allow", "OK", "session", u.Alice.ID, "", f.SessionIDs["alice"]}},
		{h("X-Api-Key", k.Banned.Key), want{"/banned", "deny", "USER_BANNED", "api_key", "", "", ""}},
		{nil, want{"/anonymous", "deny", "MISSING_CREDENTIAL", "", "", "", ""}},
	}
	for _, c := range cases {
		hdr := c.hdr
		if hdr == nil {
			hdr = map[string][]string{}
		}
		hdr["X-Auth-User-Id"] = []string{"forged"}
		send(t, gw, c.want.path, hdr)
	}

	// The log: one line per request, in order, as the table above says.
	lines := waitForLines(t, logFile, len(cases))
	for i, c := range cases {
		var ev map[string]any
		if err := json.Unmarshal([]byte(lines[i]), &ev); err != nil {
			t.Fatalf("line %d: %v\n%s", i, err, lines[i])
		}
		path := strings.SplitN(c.want.path, "?", 2)[0]
		for field, v := range map[string]string{"logger": "http.handlers.better_auth.audit", "path": path, "decision": c.want.decision,
			"code": c.want.code, "method": c.want.method, "user_id": c.want.user, "key_id": c.want.key, "session_id": c.want.session,
			"client_ip": "127.0.0.1", "front_end": "caddy"} {
			if got, _ := ev[field].(string); got != v {
				t.Errorf("event %d (%s): %s = %q, want %q", i, c.want.path, field, got, v)
			}
		}
		if c.hdr != nil && ev["credential_fingerprint"] == nil {
			t.Errorf("event %d: no credential fingerprint", i)
		}
	}
	raw, _ := os.ReadFile(logFile)
	for _, s := range secrets {
		if strings.Contains(string(raw), s) || strings.Contains(gw.Logs(), s) {
			t.Errorf("a credential was logged: %.12s...", s)
		}
	}
	if strings.Contains(gw.Logs(), "better_auth.audit") {
		t.Error("audit events reached the default log, which excludes them")
	}

	// The table has the same events.
	waitForRows(t, f.DatabaseURL, `SELECT count(*) FROM caddy_betterauth.audit_events`, len(cases))
	var user, key, ip, code string
	err := queryRow(t, f.DatabaseURL, `SELECT user_id, key_id, host(client_ip), code FROM caddy_betterauth.audit_events WHERE path = '/tools'`, &user, &key, &ip, &code)
	if err != nil || user != u.Alice.ID || key != k.Valid.ID || ip != "127.0.0.1" || code != "OK" {
		t.Fatalf("row of the allowed key: %v %q %q %q %q", err, user, key, ip, code)
	}

	// PostgreSQL goes away: a request without a credential is still
	// refused and an unknown key fails closed, at once (the lost
	// revocation listener has emptied the cache: no key passes); their
	// events wait for the database.
	testenv.Exec(t, f.DatabaseURL, "CHECKPOINT")
	pg.Stop(t)
	for i := range 20 {
		if r := send(t, gw, "/outage", nil); r.status != 401 {
			t.Fatalf("no credential during the outage: %d %s", r.status, r.raw)
		}
		if r := send(t, gw, "/outage", h("X-Api-Key", fmt.Sprintf("ba_unknown_outage_%d", i))); r.status != 503 {
			t.Fatalf("unknown key during the outage: %d %s", r.status, r.raw)
		}
	}
	waitForLines(t, logFile, len(cases)+40)
	pg.Start(t)
	waitForRows(t, f.DatabaseURL, `SELECT count(*) FROM caddy_betterauth.audit_events WHERE path = '/outage'`, 40)
	written := len(cases) + 40
	if m := metricValue(t, gw, k.Valid.Key, `caddy_better_auth_audit_events_total{outcome="written"}`); m < float64(written) {
		t.Errorf("audit_events_total written = %v, want at least %d", m, written)
	}
	var failed int
	if err := queryRow(t, f.DatabaseURL, `SELECT count(*) FROM caddy_betterauth.audit_events WHERE path = '/outage' AND decision = 'error' AND code = 'BACKEND_UNAVAILABLE' AND status = 503`, &failed); err != nil || failed != 20 {
		t.Fatalf("503s recorded: %d %v", failed, err)
	}
}

// waitForLines polls a log file until it holds n lines, and returns them.
func waitForLines(t *testing.T, path string, n int) []string {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	poll := time.NewTicker(20 * time.Millisecond) // another process writes the file
	defer poll.Stop()
	for {
		var lines []string
		if fh, err := os.Open(path); err == nil {
			sc := bufio.NewScanner(fh)
			for sc.Scan() {
				lines = append(lines, sc.Text())
			}
			fh.Close()
		}
		if len(lines) >= n {
			return lines
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s has %d lines, want %d", path, len(lines), n)
		}
		<-poll.C
	}
}

// waitForRows polls a count query until it reaches n.
func waitForRows(t *testing.T, db, query string, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	poll := time.NewTicker(50 * time.Millisecond) // another process writes the rows
	defer poll.Stop()
	got := 0
	for {
		if err := queryRow(t, db, query, &got); err == nil && got >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d, want %d", query, got, n)
		}
		<-poll.C
	}
}

func queryRow(t *testing.T, db, query string, dst ...any) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, db)
	if err != nil {
		return err
	}
	defer c.Close(ctx)
	return c.QueryRow(ctx, query).Scan(dst...)
}

// metricValue scrapes the gateway's /metrics route, behind better_auth
// (which Caddy orders before handle) with key, for one series.
func metricValue(t *testing.T, gw *testenv.Caddy, key, series string) float64 {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, gw.URL+"/metrics", nil)
	req.Header.Set("X-Api-Key", key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for line := range strings.Lines(string(body)) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			return f
		}
	}
	t.Fatalf("/metrics has no %s", series)
	return 0
}
