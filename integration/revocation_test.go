package integration

import (
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caddy-betterauth/caddy-betterauth/internal/testenv"
)

// With the triggers installed, a key, session or user revoked in
// Better-Auth is rejected at once, although the gateway caches for an hour.
func TestRevocationIsPushed(t *testing.T) {
	t.Parallel()
	f := testenv.Seed(t, testenv.SeedOptions{})
	if out, errOut, code := runCLI(t, "", []string{"DATABASE_URL=" + f.DatabaseURL}, "install-triggers"); code != 0 || !strings.Contains(out, "installed") {
		t.Fatalf("install-triggers: exit %d\n%s%s", code, out, errOut)
	}
	up := newUpstream(t)
	gw := gateway(t, f.DatabaseURL, up, "cache {\n\t\t\tttl 1h\n\t\t}")

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
