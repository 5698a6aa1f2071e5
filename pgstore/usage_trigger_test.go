package pgstore_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/caddy-betterauth/caddy-betterauth/internal/testenv"
	"github.com/caddy-betterauth/caddy-betterauth/pgstore"
)

// Better-Auth 1.7.5's verify (several UPDATEs: a refill's compare-and-swap,
// the rate limit, updatedAt; and on a key without a quota, lastRequest
// alone) never notifies; an app's change of the quota that is not
// verify-shaped does, as apikey_usage.
func TestTriggersTellAppUsageChangesFromVerifies(t *testing.T) {
	t.Parallel()
	f := testenv.Seed(t, testenv.SeedOptions{})
	store, _ := pgstore.New(newPool(t, f.DatabaseURL, nil), pgstore.Options{})
	installTriggers(t, f.DatabaseURL, store)
	ctx, conn := listen(t, f.DatabaseURL, 60*time.Second)
	// A marker: an update of enabled on another key, always sent.
	marker := func() {
		testenv.Exec(t, f.DatabaseURL, `UPDATE "apikey" SET "enabled" = NOT "enabled" WHERE "id" = $1`, f.Keys.Valid2.ID)
	}
	// collect returns the notifications before the marker's.
	collect := func() []pgstore.Invalidation {
		var out []pgstore.Invalidation
		for {
			n, err := conn.WaitForNotification(ctx)
			if err != nil {
				t.Fatal(err)
			}
			var inv pgstore.Invalidation
			json.Unmarshal([]byte(n.Payload), &inv)
			if inv.ID == f.Keys.Valid2.ID {
				return out
			}
			out = append(out, inv)
		}
	}
	refill := f.Keys.Refill
	// Better-Auth's verify of a key whose refill is due, and of a key
	// without a quota (remaining NULL: lastRequest / rate limit only).
	testenv.Exec(t, f.DatabaseURL, `UPDATE "apikey" SET "lastRefillAt" = date_trunc('milliseconds', now() - interval '30 days'), "remaining" = 0,
		"refillInterval" = 1000, "refillAmount" = 5 WHERE "id" = $1`, refill.ID)
	marker()
	collect() // the setup's own
	for _, k := range []testenv.Key{refill, refill, f.Keys.Valid} {
		out := testenv.RunSeed(t, f.DatabaseURL, nil, "verify-key", k.Key)
		var v struct{ Valid bool }
		if json.Unmarshal(out, &v) != nil || !v.Valid {
			t.Fatalf("verify %s: %s", k.ID, out)
		}
	}
	marker()
	if got := collect(); len(got) != 0 {
		t.Errorf("Better-Auth's verifies notified: %+v", got)
	}
	// An admin resets the quota now: remaining and lastRefillAt together,
	// not as a refill does (remaining = refillAmount - 1). (A cut of
	// exactly one looks like a verify: a limitation the README states.)
	testenv.Exec(t, f.DatabaseURL, `UPDATE "apikey" SET "remaining" = 1000, "lastRefillAt" = now(), "updatedAt" = now() WHERE "id" = $1`, refill.ID)
	marker()
	if got := collect(); len(got) != 1 || got[0] != (pgstore.Invalidation{Kind: "apikey_usage", ID: refill.ID}) {
		t.Errorf("the app's reset of remaining with lastRefillAt: %+v, want one apikey_usage", got)
	}
}
