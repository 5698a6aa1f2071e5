package integration

import (
	"context"
	"net/http"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/caddy-betterauth/caddy-betterauth/internal/testenv"
)

// A PostgreSQL restart costs no request: the gateway's pooled connections
// all die with the server, and the first lookup on each of them is retried
// on a new connection instead of answering 503.
func TestPostgresRestartCostsNoRequest(t *testing.T) {
	t.Parallel()
	pg := testenv.StartPostgres(t)
	f := testenv.Seed(t, testenv.SeedOptions{Server: pg.URL})
	up := newUpstream(t)
	// No positive or negative caching: every request below is a lookup.
	gw := startGateway(t, f.DatabaseURL, up, "cache {\n\t\t\tttl off\n\t\t\tnegative_ttl off\n\t\t}")
	u, k := f.Users, f.Keys

	// Open several pooled connections: concurrent lookups, until the server
	// sees at least three of the gateway's (the pool keeps idle ones).
	warm := []http.Header{
		h("X-Api-Key", k.Valid.Key), h("X-Api-Key", k.Valid2.Key), h("X-Api-Key", k.Eve.Key),
		h("Authorization", "Bearer "+u.Alice.Signed), h("Authorization", "Bearer "+u.Zoe.Signed),
		h("X-Api-Key", k.Zoe.Key), h("X-Api-Key", k.Limited.Key), h("Authorization", "Bearer "+u.Eve.Signed),
	}
	pooled := 0
	for round := 0; round < 50 && pooled < 3; round++ {
		var wg sync.WaitGroup
		statuses := make([]int, len(warm))
		for i, hdr := range warm {
			wg.Go(func() { statuses[i] = send(t, gw, "/", hdr).status })
		}
		wg.Wait()
		for i, s := range statuses {
			if s != 200 {
				t.Fatalf("warm-up request %d: %d", i, s)
			}
		}
		pooled = lookupConnections(t, f.DatabaseURL)
	}
	if pooled < 3 {
		t.Fatalf("the gateway holds %d connections after the warm-up, want at least 3", pooled)
	}

	// The test server commits asynchronously (synchronous_commit=off) and
	// Stop is an immediate shutdown: without a checkpoint the seed's last
	// writes (the ban, the expired key) can be lost in crash recovery.
	testenv.Exec(t, f.DatabaseURL, "CHECKPOINT")
	restart := time.Now()
	pg.Stop(t)
	pg.Start(t)
	// pgxpool pings a connection idle for more than a second before handing
	// it out: where the restart takes longer than that, the dead connections
	// are weeded out without any retry, and this test cannot tell.
	t.Logf("%d pooled connections; PostgreSQL restarted in %v", pooled, time.Since(restart).Round(time.Millisecond))

	// One after another, each with a credential no earlier request used:
	// every one must be decided, none may get 503.
	for i, tc := range []struct {
		name   string
		hdr    http.Header
		status int
		user   string
	}{
		{"api key", h("X-Api-Key", k.Refill.Key), 200, u.Alice.ID},
		{"unknown key", h("X-Api-Key", "ba_unknown_after_restart_1"), 401, ""},
		{"signed session cookie", h("Cookie", "better-auth.session_token="+url.QueryEscape(u.Zoe.Signed)), 200, u.Zoe.ID},
		{"raw session token", h("Authorization", "Bearer "+u.Eve.Token), 200, u.Eve.ID},
		{"disabled key", h("X-Api-Key", k.Disabled.Key), 401, ""},
		{"second unknown key", h("X-Api-Key", "ba_unknown_after_restart_2"), 401, ""},
		{"banned user's key", h("X-Api-Key", k.Banned.Key), 403, ""},
		{"raw session token, other user", h("Authorization", "Bearer "+u.Zoe.Token), 200, u.Zoe.ID},
		{"expired key", h("X-Api-Key", k.Expired.Key), 401, ""},
		{"third unknown key", h("X-Api-Key", "ba_unknown_after_restart_3"), 401, ""},
	} {
		r := send(t, gw, "/", tc.hdr)
		if r.status != tc.status {
			t.Errorf("request %d after the restart (%s): %d %s, want %d", i+1, tc.name, r.status, r.raw, tc.status)
		} else if got := up.headers(r.id).Get("X-Auth-User-Id"); got != tc.user {
			t.Errorf("request %d after the restart (%s): user %q, want %q", i+1, tc.name, got, tc.user)
		}
	}
}

// lookupConnections counts the gateway's lookup connections on the server
// (the revocation listener has an application_name of its own).
func lookupConnections(t *testing.T, db string) int {
	t.Helper()
	ctx := context.Background()
	c, err := pgx.Connect(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	var n int
	if err := c.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE application_name = 'caddy-better-auth' AND datname = current_database()`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}
