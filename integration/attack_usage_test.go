package integration

// Attacks on usage counting, through the real Caddy binary. Each test
// states what real Better-Auth (or the README) says should happen and
// fails while the gateway does otherwise.

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/caddy-betterauth/caddy-betterauth/internal/testenv"
)

// ATTACK (usage redis): the app lowers a key's quota with its own
// updateApiKey (a dashboard cutting a customer off: remaining 100 -> 1).
// Better-Auth's next verifies pass once more and then refuse. The trigger
// drops the update (usage columns only, and remaining went down), so no
// gateway reads the row again, and Redis keeps handing out the old quota
// for as long as the key is used (the hash's TTL is renewed on every use).
func TestAttackRedisIgnoresQuotaLoweredByApp(t *testing.T) {
	t.Parallel()
	f := seedWithTriggers(t, testenv.SeedOptions{})
	counted := newUsageRedis(t)
	gw := startGateway(t, f.DatabaseURL, newUpstream(t), counted.config())
	settle(t, gw, true)
	ba := startUsageShell(t, f.DatabaseURL)
	k := ba.create(t, f.Users.Alice.ID, map[string]any{"remaining": 100, "rateLimitEnabled": false})
	if r := send(t, gw, "/", h("X-Api-Key", k.Key)); r.status != 200 {
		t.Fatalf("first use: %d %s", r.status, r.raw)
	}
	counted.flushed(t)
	var upd struct{ Remaining *int64 }
	ba.do(t, map[string]any{"op": "update", "id": k.ID, "userId": f.Users.Alice.ID, "body": map[string]any{"remaining": 1}}, &upd)
	if upd.Remaining == nil || *upd.Remaining != 1 {
		t.Fatalf("updateApiKey: %+v", upd)
	}
	time.Sleep(time.Second) // any notification has long arrived
	codes := map[string]int{}
	for range 5 {
		codes[code(send(t, gw, "/", h("X-Api-Key", k.Key)))]++
	}
	counted.flushed(t)
	row := ba.row(t, k.ID)
	if codes["OK"] != 1 {
		t.Errorf("after the app set remaining to 1, 5 requests: %v (Better-Auth: 1 OK, 4 USAGE_EXCEEDED); the row now says remaining %v",
			codes, deref(row.Remaining))
	}
}

// ATTACK (usage redis): a quota the app grants while no gateway is
// listening (every replica restarted at once, or the listener's
// connection dropped: notifications are not queued for absent listeners)
// never reaches Redis: the key stays refused, while Better-Auth's verify
// (and the row) say it has 10 uses left. OnReset purges the credential
// cache, not the usage hashes.
func TestAttackRedisMissesQuotaGrantedWhileNotListening(t *testing.T) {
	t.Parallel()
	f := seedWithTriggers(t, testenv.SeedOptions{})
	counted := newUsageRedis(t)
	up := newUpstream(t)
	gw := startGateway(t, f.DatabaseURL, up, counted.config())
	settle(t, gw, true)
	ba := startUsageShell(t, f.DatabaseURL)
	k := ba.create(t, f.Users.Alice.ID, map[string]any{"remaining": 2, "refillAmount": 2, "refillInterval": 86_400_000,
		"rateLimitEnabled": false})
	for i, want := range []string{"OK", "OK", "USAGE_EXCEEDED"} {
		if r := send(t, gw, "/", h("X-Api-Key", k.Key)); code(r) != want {
			t.Fatalf("use %d: %d %s, want %s", i, r.status, r.raw, want)
		}
	}
	counted.flushed(t)
	gw.Stop(t) // a rolling restart, a deploy: nobody listens for a moment

	var upd struct{ Remaining *int64 }
	ba.do(t, map[string]any{"op": "update", "id": k.ID, "userId": f.Users.Alice.ID, "body": map[string]any{"remaining": 10}}, &upd)

	gw2 := startGateway(t, f.DatabaseURL, up, counted.config())
	settle(t, gw2, true)
	if r := send(t, gw2, "/", h("X-Api-Key", k.Key)); r.status != 200 {
		t.Errorf("the app granted 10 uses while no gateway listened; the gateway answers %d %s (Better-Auth: OK, 9 left)", r.status, r.raw)
	}
}

// ATTACK (usage database): ClaimUsage has no bound but the client's own
// patience: a row lock on one key (an app transaction, a migration, or
// just a hot key) parks every request for that key on a pool connection,
// and once the pool (max(4, GOMAXPROCS) by default) is full, every other
// key's requests wait too: one key stalls the whole gateway, while
// lookups alone are bounded by lookup_timeout.
func TestAttackDatabaseOneLockedKeyStallsEveryKey(t *testing.T) {
	t.Parallel()
	f := testenv.Seed(t, testenv.SeedOptions{})
	ba := startUsageShell(t, f.DatabaseURL)
	sep := "?"
	if strings.Contains(f.DatabaseURL, "?") {
		sep = "&"
	}
	gw := startGateway(t, f.DatabaseURL+sep+"pool_max_conns=4", newUpstream(t), "usage database")
	a := ba.create(t, f.Users.Alice.ID, map[string]any{"remaining": 1000, "rateLimitEnabled": false})
	b := ba.create(t, f.Users.Alice.ID, map[string]any{"remaining": 1000, "rateLimitEnabled": false})
	for _, k := range []testenv.Key{a, b} {
		if r := send(t, gw, "/", h("X-Api-Key", k.Key)); r.status != 200 {
			t.Fatalf("warm-up: %d %s", r.status, r.raw)
		}
	}

	ctx := context.Background()
	locker, err := pgx.Connect(ctx, f.DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	defer locker.Close(ctx)
	tx, err := locker.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `SELECT 1 FROM apikey WHERE id = $1 FOR UPDATE`, a.ID); err != nil {
		t.Fatal(err)
	}
	// Clients of key A that give up after 5 s (disconnect mid-request).
	var wg sync.WaitGroup
	impatient := &http.Client{Timeout: 5 * time.Second}
	for range 8 {
		wg.Go(func() {
			req, _ := http.NewRequest(http.MethodGet, gw.URL+"/", nil)
			req.Header.Set("X-Api-Key", a.Key)
			if resp, err := impatient.Do(req); err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	}
	time.Sleep(300 * time.Millisecond)
	start := time.Now()
	req, _ := http.NewRequest(http.MethodGet, gw.URL+"/", nil)
	req.Header.Set("X-Api-Key", b.Key)
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	took := time.Since(start)
	status := 0
	if err == nil {
		status = resp.StatusCode
		resp.Body.Close()
	}
	if err != nil || status != 200 || took > time.Second {
		t.Errorf("key B, unrelated to the locked row of key A: status %d, err %v, after %v", status, err, took.Round(time.Millisecond))
	}
	wg.Wait()
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}

	// The abandoned requests of key A: none reached the upstream, none may
	// have spent quota, and no gateway connection may be left in a
	// transaction.
	time.Sleep(500 * time.Millisecond)
	var remaining int64
	var stuck int
	if err := locker.QueryRow(ctx, `SELECT remaining FROM apikey WHERE id = $1`, a.ID).Scan(&remaining); err != nil {
		t.Fatal(err)
	}
	if err := locker.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE application_name = 'caddy-better-auth'
		AND state LIKE 'idle in transaction%'`).Scan(&stuck); err != nil {
		t.Fatal(err)
	}
	t.Logf("key A after 8 abandoned requests: remaining %d (999 before); gateway connections idle in a transaction: %d", remaining, stuck)
	if remaining != 999 || stuck != 0 {
		t.Errorf("abandoned requests spent quota (remaining %d, want 999) or left transactions open (%d)", remaining, stuck)
	}
	if r := send(t, gw, "/", h("X-Api-Key", a.Key)); r.status != 200 {
		t.Errorf("key A after the lock: %d %s", r.status, r.raw)
	}
}

// Sound (checked): a client cannot plant X-Auth-Key-Remaining or the
// RateLimit fields upstream, in any spelling, nor drop the gateway's own
// through Connection.
func TestAttackRemainingHeaderSpoofing(t *testing.T) {
	t.Parallel()
	f := testenv.Seed(t, testenv.SeedOptions{})
	up := newUpstream(t)
	gw := startGateway(t, f.DatabaseURL, up, "usage database")
	ba := startUsageShell(t, f.DatabaseURL)
	k := ba.create(t, f.Users.Alice.ID, map[string]any{"remaining": 50, "rateLimitEnabled": false})
	for i, hdr := range []http.Header{
		h("X-Auth-Key-Remaining", "999999"),
		h("x-auth-key-remaining", "999999"),
		h("X_Auth_Key_Remaining", "999999"),
		h("X-Auth-Key-Remaining", "1", "X-Auth-Key-Remaining", "2"),
		h("Connection", "X-Auth-Key-Remaining"),
		h("Connection", "x_auth_key_remaining, keep-alive"),
	} {
		hdr.Set("X-Api-Key", k.Key)
		r := send(t, gw, "/", hdr)
		got := up.headers(r.id)
		want := fmt.Sprint(50 - 1 - i)
		if r.status != 200 || got == nil {
			t.Fatalf("%d: %d %s", i, r.status, r.raw)
		}
		if vs := got.Values("X-Auth-Key-Remaining"); len(vs) != 1 || vs[0] != want {
			t.Errorf("%d (%v): upstream X-Auth-Key-Remaining %q, want %q", i, hdr, vs, want)
		}
		for name := range got {
			if strings.EqualFold(strings.ReplaceAll(name, "_", "-"), "X-Auth-Key-Remaining") && name != "X-Auth-Key-Remaining" {
				t.Errorf("%d: upstream got %s: %q", i, name, got[name])
			}
		}
	}
}

// ATTACK (parity, low): a lastRefillAt stored below the millisecond by
// another writer (an admin's `SET "lastRefillAt" = now()`, a SQL job).
// Better-Auth 1.7.5 reads it as a JavaScript Date (ms), so its refill
// compare-and-swap never matches: it never refills that key again, and
// refuses it once remaining is spent. The gateway refills under its lock:
// different answers and a different row. With usage redis, Redis refills
// while the write-back's compare-and-swap fails on the row: Redis and the
// row part ways for good.
func TestAttackMicrosecondLastRefillAt(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"database", "redis"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			f := seedWithTriggers(t, testenv.SeedOptions{})
			var counted *usageRedis
			config := "usage database"
			if mode == "redis" {
				counted = newUsageRedis(t)
				config = counted.config()
			}
			gw := startGateway(t, f.DatabaseURL, newUpstream(t), config)
			settle(t, gw, counted != nil)
			ba := startUsageShell(t, f.DatabaseURL)
			body := map[string]any{"remaining": 1, "refillAmount": 5, "refillInterval": 1000, "rateLimitEnabled": false}
			theirs, ours := ba.create(t, f.Users.Alice.ID, body), ba.create(t, f.Users.Alice.ID, body)
			ctx := context.Background()
			c, err := pgx.Connect(ctx, f.DatabaseURL)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close(ctx)
			// Two seconds ago, with microseconds.
			if _, err := c.Exec(ctx, `UPDATE apikey SET "lastRefillAt" = date_trunc('milliseconds', now()) - interval '2 s' + interval '123 microseconds'
				WHERE id = ANY($1)`, []string{theirs.ID, ours.ID}); err != nil {
				t.Fatal(err)
			}
			if counted != nil {
				counted.reseeded(t, ours.ID)
			}
			var got []string
			var want []string
			for range 3 {
				var r struct{ Code string }
				ba.do(t, map[string]any{"op": "verify", "key": theirs.Key}, &r)
				want = append(want, r.Code)
				got = append(got, code(send(t, gw, "/", h("X-Api-Key", ours.Key))))
			}
			if counted != nil {
				counted.flushed(t)
			}
			a, b := ba.row(t, theirs.ID), ba.row(t, ours.ID)
			left := int64(-1)
			if counted != nil {
				left, _ = counted.c.HGet(ctx, counted.prefix+"{usage}:key:"+ours.ID, "r").Int64()
			}
			t.Logf("Better-Auth %v (row remaining %v), gateway %v (row remaining %v, Redis %d)", want, deref(a.Remaining), got,
				deref(b.Remaining), left)
			if fmt.Sprint(got) != fmt.Sprint(want) || deref(a.Remaining) != deref(b.Remaining) {
				t.Errorf("answers or rows differ from Better-Auth's")
			}
			if counted != nil && left != *b.Remaining {
				t.Errorf("Redis says %d remaining, the row %d", left, *b.Remaining)
			}
		})
	}
}
