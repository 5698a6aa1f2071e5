package integration

import (
	"bufio"
	"crypto/rand"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caddy-betterauth/caddy-betterauth/internal/testenv"
)

// seedWithTriggers has real Better-Auth seed a database and installs the
// revocation triggers in it with the built CLI.
func seedWithTriggers(t *testing.T, opts testenv.SeedOptions) *testenv.Fixture {
	t.Helper()
	f := testenv.Seed(t, opts)
	if out, errOut, code := runCLI(t, "", []string{"DATABASE_URL=" + f.DatabaseURL}, "install-triggers"); code != 0 || !strings.Contains(out, "installed") {
		t.Fatalf("install-triggers: exit %d\n%s%s", code, out, errOut)
	}
	return f
}

// With the triggers installed, a key, session or user revoked in
// Better-Auth is rejected at once, although the gateway caches for an hour.
func TestRevocationIsPushed(t *testing.T) {
	t.Parallel()
	f := seedWithTriggers(t, testenv.SeedOptions{})
	up := newUpstream(t)
	gw := startGateway(t, f.DatabaseURL, up, "cache {\n\t\t\tttl 1h\n\t\t}")

	// within sends requests back to back until the answer has the wanted
	// status; the bound is the test's assertion, the requests only how it
	// observes the change.
	within := func(t *testing.T, hdr http.Header, want int, since time.Time, bound time.Duration) time.Duration {
		t.Helper()
		for {
			if r := send(t, gw, "/", hdr); r.status == want {
				return time.Since(since)
			}
			if time.Since(since) > bound {
				t.Fatalf("no %d %v after the change", want, time.Since(since))
			}
		}
	}

	warm := func(t *testing.T, hdr http.Header) {
		t.Helper()
		for range 2 {
			if r := send(t, gw, "/", hdr); r.status != 200 {
				t.Fatalf("before the revocation: %d %s", r.status, r.raw)
			}
		}
	}

	// Through Better-Auth itself: the bound counts from when its call
	// returned, after the commit.
	for _, tc := range []struct {
		name string
		hdr  http.Header
		seed []string
		want int
	}{
		{"key deleted", h("X-Api-Key", f.Keys.Deletable.Key), []string{"delete-key", f.Keys.Deletable.ID, f.Users.Alice.Signed}, 401},
		{"key disabled", h("X-Api-Key", f.Keys.Valid2.Key), []string{"disable-key", f.Keys.Valid2.ID, f.Users.Alice.ID}, 401},
		{"session revoked", h("Authorization", "Bearer "+f.Users.Zoe.Signed), []string{"revoke-session", f.Users.Zoe.Token}, 401},
		{"user banned", h("X-Api-Key", f.Keys.Eve.Key), []string{"ban-user", f.Users.Eve.ID}, 403},
	} {
		t.Run(tc.name, func(t *testing.T) {
			warm(t, tc.hdr)
			testenv.RunSeed(t, f.DatabaseURL, nil, tc.seed...)
			d := within(t, tc.hdr, tc.want, time.Now(), time.Second)
			t.Logf("%s: rejected %v after Better-Auth returned", tc.name, d.Round(time.Millisecond))
		})
	}

	// The distribution, from the commit: disable and re-enable one key
	// repeatedly with plain SQL, whose commit time the test knows.
	var lat []time.Duration
	key := h("X-Api-Key", f.Keys.Valid.Key)
	for range 20 {
		warm(t, key)
		testenv.Exec(t, f.DatabaseURL, `UPDATE apikey SET enabled = false WHERE id = $1`, f.Keys.Valid.ID)
		lat = append(lat, within(t, key, 401, time.Now(), time.Second))
		testenv.Exec(t, f.DatabaseURL, `UPDATE apikey SET enabled = true WHERE id = $1`, f.Keys.Valid.ID)
		// Re-enabling is an update too: the cached "disabled" goes at once.
		within(t, key, 200, time.Now(), time.Second)
	}
	slices.Sort(lat)
	t.Logf("revocation latency over %d disables: min %v, p50 %v, p90 %v, max %v", len(lat),
		lat[0].Round(time.Microsecond), lat[len(lat)/2].Round(time.Microsecond),
		lat[len(lat)*9/10].Round(time.Microsecond), lat[len(lat)-1].Round(time.Microsecond))
}

// An open event stream lives only as long as its credential: a benign
// update of the key leaves it open, disabling the key ends it, and a key
// that expires ends its stream when it expires.
func TestStreamsEndWithTheirCredential(t *testing.T) {
	t.Parallel()
	f := seedWithTriggers(t, testenv.SeedOptions{})
	up := newUpstream(t)
	gw := startGateway(t, f.DatabaseURL, up, "cache {\n\t\t\tttl 1h\n\t\t}")
	// Start the listener and let it connect before streams open.
	send(t, gw, "/", h("X-Api-Key", "ba_start_the_listener"))
	gw.WaitForLog(t, "listening for revocations", 10*time.Second)

	// open starts a ticking event stream and returns a channel that is
	// closed when the stream ends, and one that receives each tick.
	open := func(t *testing.T, key, accept string) (ticks <-chan struct{}, ended <-chan struct{}) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, gw.URL+"/sse?ticks", nil)
		req.Header.Set("X-Api-Key", key)
		if accept != "" {
			req.Header.Set("Accept", accept)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("opening the stream: %v %v", resp, err)
		}
		tk, end := make(chan struct{}, 1000), make(chan struct{})
		go func() {
			defer close(end)
			defer resp.Body.Close()
			sc := bufio.NewScanner(resp.Body)
			for sc.Scan() {
				if sc.Text() == "data: tick" {
					tk <- struct{}{}
				}
			}
		}()
		return tk, end
	}
	waitTicks := func(t *testing.T, ticks <-chan struct{}, ended <-chan struct{}, n int) {
		t.Helper()
		for range n {
			select {
			case <-ticks:
			case <-ended:
				t.Fatal("the stream ended")
			case <-time.After(5 * time.Second):
				t.Fatal("no tick")
			}
		}
	}
	endsWithin := func(t *testing.T, ended <-chan struct{}, since time.Time, bound time.Duration) {
		t.Helper()
		select {
		case <-ended:
			t.Logf("stream ended %v after the change", time.Since(since).Round(time.Millisecond))
		case <-time.After(bound):
			t.Fatalf("the stream is still open %v after the change", bound)
		}
	}

	// Whether a response streams is the upstream's choice, not the
	// client's Accept: every one of these gets an event stream, and each
	// must end with its credential.
	for _, accept := range append([]string{"text/event-stream"}, sseAccept...) {
		t.Run("revoked/"+acceptName(accept), func(t *testing.T) {
			ticks, ended := open(t, f.Keys.Valid.Key, accept)
			waitTicks(t, ticks, ended, 2)
			// Better-Auth touches keys all the time; that is not a revocation.
			testenv.Exec(t, f.DatabaseURL, `UPDATE apikey SET "updatedAt" = now() WHERE id = $1`, f.Keys.Valid.ID)
			waitTicks(t, ticks, ended, 10) // 200 ms more of a stream that stays open
			testenv.Exec(t, f.DatabaseURL, `UPDATE apikey SET enabled = false WHERE id = $1`, f.Keys.Valid.ID)
			endsWithin(t, ended, time.Now(), time.Second)
			testenv.Exec(t, f.DatabaseURL, `UPDATE apikey SET enabled = true WHERE id = $1`, f.Keys.Valid.ID)
		})
		t.Run("expired/"+acceptName(accept), func(t *testing.T) {
			testenv.Exec(t, f.DatabaseURL, `UPDATE apikey SET "expiresAt" = now() + interval '1500 milliseconds' WHERE id = $1`, f.Keys.Valid2.ID)
			ticks, ended := open(t, f.Keys.Valid2.Key, accept)
			waitTicks(t, ticks, ended, 2)
			start := time.Now()
			endsWithin(t, ended, start, 3*time.Second)
			testenv.Exec(t, f.DatabaseURL, `UPDATE apikey SET "expiresAt" = NULL WHERE id = $1`, f.Keys.Valid2.ID)
		})
	}
	gw.WaitForLog(t, "the credential was revoked", 5*time.Second)
}

// Three gateways share one PostgreSQL and one Redis. A key cached by all of
// them is rejected by all of them once Better-Auth deletes it, also after
// the database restarted under their listeners.
func TestRevocationReachesEveryReplica(t *testing.T) {
	t.Parallel()
	redisURL := testenv.Require(t, "TEST_REDIS_URL")
	pg := testenv.StartPostgres(t)
	f := seedWithTriggers(t, testenv.SeedOptions{Server: pg.URL})
	up := newUpstream(t)
	extra := fmt.Sprintf("cache {\n\t\t\tttl 1h\n\t\t}\n\t\tredis %s {\n\t\t\tprefix replicas-%s:\n\t\t}", redisURL, strings.ToLower(rand.Text()[:8]))
	var gws []*testenv.Caddy
	for range 3 {
		gw := startGateway(t, f.DatabaseURL, up, extra)
		settle(t, gw, true)
		gws = append(gws, gw)
	}
	everywhere := func(t *testing.T, hdr http.Header, want int, bound time.Duration) {
		t.Helper()
		since := time.Now()
		for i, gw := range gws {
			for {
				r := send(t, gw, "/", hdr)
				if r.status == want {
					break
				}
				if time.Since(since) > bound {
					t.Fatalf("gateway %d: %d %s, want %d within %v", i, r.status, r.raw, want, bound)
				}
			}
		}
	}

	key := h("X-Api-Key", f.Keys.Deletable.Key)
	everywhere(t, key, 200, time.Second)
	testenv.RunSeed(t, f.DatabaseURL, nil, "delete-key", f.Keys.Deletable.ID, f.Users.Alice.Signed)
	everywhere(t, key, 401, time.Second)

	// The database restarts: every listener reconnects (and drops what it
	// may have missed), and revocations flow again.
	pg.Stop(t)
	pg.Start(t)
	for _, gw := range gws {
		gw.WaitForLogCount(t, "listening for revocations", 2, 30*time.Second)
	}
	session := h("Authorization", "Bearer "+f.Users.Zoe.Signed)
	everywhere(t, session, 200, time.Second)
	testenv.RunSeed(t, f.DatabaseURL, nil, "revoke-session", f.Users.Zoe.Token)
	everywhere(t, session, 401, time.Second)
}

// A gateway that does not listen to the database itself (its listener off,
// or down) still hears revocations from the others, over the shared Redis.
func TestGatewaysRelayRevocations(t *testing.T) {
	t.Parallel()
	redisURL := testenv.Require(t, "TEST_REDIS_URL")
	f := seedWithTriggers(t, testenv.SeedOptions{})
	up := newUpstream(t)
	prefix := "relay-" + strings.ToLower(rand.Text()[:8]) + ":"
	shared := fmt.Sprintf("cache {\n\t\t\tttl 1h\n\t\t}\n\t\tredis %s {\n\t\t\tprefix %s\n\t\t}", redisURL, prefix)
	listening := startGateway(t, f.DatabaseURL, up, shared)
	deaf := startGateway(t, f.DatabaseURL, up, "no_revocation_listener\n\t\t"+shared)
	settle(t, listening, true)
	send(t, deaf, "/", h("X-Api-Key", "ba_start_the_listener"))
	deaf.WaitForLog(t, "listening for invalidations from other gateways", 10*time.Second)

	key := h("X-Api-Key", f.Keys.Valid.Key)
	for range 2 {
		if r := send(t, deaf, "/", key); r.status != 200 {
			t.Fatalf("before: %d %s", r.status, r.raw)
		}
	}
	testenv.Exec(t, f.DatabaseURL, `UPDATE apikey SET enabled = false WHERE id = $1`, f.Keys.Valid.ID)
	since := time.Now()
	for {
		if r := send(t, deaf, "/", key); r.status == 401 {
			break
		}
		if time.Since(since) > time.Second {
			t.Fatal("the gateway without a listener still accepts the key a second later")
		}
	}
	t.Logf("relayed revocation took %v", time.Since(since).Round(time.Microsecond))
}
