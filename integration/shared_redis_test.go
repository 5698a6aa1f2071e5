package integration

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/caddy-betterauth/caddy-betterauth/cache"
	"github.com/caddy-betterauth/caddy-betterauth/internal/testenv"
)

// sharedGateway starts a gateway on the shared Redis at url with the given
// prefix (extra lines go in the better_auth block), and lets its watchers
// connect.
func sharedGateway(t *testing.T, db, url, prefix string, up *upstream, extra string) *testenv.Caddy {
	t.Helper()
	gw := testenv.StartCaddy(t, "", fmt.Sprintf(`
	better_auth {
		database {env.DATABASE_URL}
		secret {env.BETTER_AUTH_SECRET}
		redis {env.CACHE_REDIS_URL} {
			prefix %s
			# Past the default 100ms: under a loaded test run (the race
			# detector, every test in parallel on two cores) a read that
			# times out skips the tier, and these tests look at what it holds.
			timeout 2s
		}
		%s
	}
	reverse_proxy %s`, prefix, extra, up.addr()),
		"DATABASE_URL="+db, "BETTER_AUTH_SECRET="+testenv.Secret, "CACHE_REDIS_URL="+url)
	if strings.Contains(extra, "no_revocation_listener") {
		send(t, gw, "/", h("X-Api-Key", "ba_start_the_watchers"))
		gw.WaitForLog(t, "listening for invalidations from other gateways", 10*time.Second)
	} else {
		settle(t, gw, true)
	}
	return gw
}

// sharedKey is the Redis key of an API key's shared entry.
func sharedKey(prefix, version, apiKey string) string {
	sum := sha256.Sum256([]byte(apiKey))
	return prefix + version + ":k:" + base64.RawURLEncoding.EncodeToString(sum[:])
}

// Someone who can write to the cache Redis, but holds neither the secret
// nor a valid key, tries to mint an identity, to reuse a genuine entry for
// another key, and to change one.
func TestSharedRedisCannotMintIdentities(t *testing.T) {
	t.Parallel()
	redisURL := testenv.Require(t, "TEST_REDIS_URL")
	f := testenv.Seed(t, testenv.SeedOptions{})
	up := newUpstream(t)
	prefix := "mint-" + strings.ToLower(rand.Text()[:8]) + ":"
	a := sharedGateway(t, f.DatabaseURL, redisURL, prefix, up, "")
	rdb := redisClient(t, redisURL)
	ctx := context.Background()

	// A forged entry for a key the attacker invents, in the format of
	// entries before they were sealed and in today's: an admin, under the
	// current epoch, valid for a day.
	invented := "ba_invented_" + strings.ToLower(rand.Text())
	for _, version := range []string{"v1", "v2", cache.CodecVersion} {
		epoch, _ := rdb.Get(ctx, prefix+version+":epoch").Uint64()
		forged, _ := json.Marshal(map[string]any{
			"exp": time.Now().Add(24 * time.Hour).UnixMilli(), "ep": epoch,
			"k": map[string]any{"id": "forged-key", "on": true},
			"u": map[string]any{"id": f.Users.Alice.ID, "email": "root@example.com", "role": "admin"},
		})
		if err := rdb.Set(ctx, sharedKey(prefix, version, invented), forged, time.Hour).Err(); err != nil {
			t.Fatal(err)
		}
	}
	r := send(t, a, "/", h("X-Api-Key", invented))
	if r.status != 401 || up.headers(r.id) != nil {
		t.Fatalf("forged entry: %d %s (upstream saw %v)", r.status, r.raw, up.headers(r.id))
	}

	// A genuine entry, copied under the invented key's name.
	if r := send(t, a, "/", h("X-Api-Key", f.Keys.Valid.Key)); r.status != 200 {
		t.Fatalf("valid key: %d %s", r.status, r.raw)
	}
	genuine, err := rdb.Get(ctx, sharedKey(prefix, cache.CodecVersion, f.Keys.Valid.Key)).Bytes()
	if err != nil {
		t.Fatalf("the valid key was not shared: %v", err)
	}
	copied := "ba_copied_" + strings.ToLower(rand.Text())
	rdb.Set(ctx, sharedKey(prefix, cache.CodecVersion, copied), genuine, time.Hour)
	if r := send(t, a, "/", h("X-Api-Key", copied)); r.status != 401 {
		t.Fatalf("a genuine entry under another key's name: %d %s", r.status, r.raw)
	}

	// A genuine entry with a byte changed: Alice becomes "Alicf" in the
	// shared entry; a second gateway reads the database instead.
	tampered := []byte(strings.Replace(string(genuine), `"Alice"`, `"Alicf"`, 1))
	if string(tampered) == string(genuine) {
		t.Fatal("the entry does not hold the name")
	}
	rdb.Set(ctx, sharedKey(prefix, cache.CodecVersion, f.Keys.Valid.Key), tampered, time.Hour)
	b := sharedGateway(t, f.DatabaseURL, redisURL, prefix, up, "")
	// b's watchers advanced the epoch when they connected: move the
	// tampered entry to the epoch now current, as an attacker would.
	epoch, _ := rdb.Get(ctx, prefix+cache.CodecVersion+":epoch").Uint64()
	tampered = []byte(strings.Replace(string(tampered), fmt.Sprintf(`"ep":%d`, epochOf(t, genuine)), fmt.Sprintf(`"ep":%d`, epoch), 1))
	rdb.Set(ctx, sharedKey(prefix, cache.CodecVersion, f.Keys.Valid.Key), tampered, time.Hour)
	r = send(t, b, "/", h("X-Api-Key", f.Keys.Valid.Key))
	if got := up.headers(r.id); r.status != 200 || got.Get("X-Auth-User-Name") != "Alice" {
		t.Fatalf("tampered entry: %d, name %q", r.status, got.Get("X-Auth-User-Name"))
	}
	b.WaitForLog(t, "failed authentication", 5*time.Second)
	if again, _ := rdb.Get(ctx, sharedKey(prefix, cache.CodecVersion, f.Keys.Valid.Key)).Bytes(); strings.Contains(string(again), "Alicf") {
		t.Fatal("the tampered entry was not replaced by the fresh record")
	}
}

// epochOf reads the epoch a sealed entry was written under.
func epochOf(t *testing.T, sealed []byte) uint64 {
	t.Helper()
	var w struct {
		Epoch uint64 `json:"ep"`
	}
	if err := json.Unmarshal(sealed[sha256.Size:], &w); err != nil {
		t.Fatal(err)
	}
	return w.Epoch
}

// Setting the shared epoch back after a revocation, with the revoked key's
// entry restored byte for byte, does not bring the key back.
func TestSharedEpochRollbackDoesNotReviveKeys(t *testing.T) {
	t.Parallel()
	redisURL := testenv.Require(t, "TEST_REDIS_URL")
	f := seedWithTriggers(t, testenv.SeedOptions{})
	up := newUpstream(t)
	prefix := "rollback-" + strings.ToLower(rand.Text()[:8]) + ":"
	extra := "cache {\n\t\t\tttl 1h\n\t\t}"
	a := sharedGateway(t, f.DatabaseURL, redisURL, prefix, up, extra)
	c := sharedGateway(t, f.DatabaseURL, redisURL, prefix, up, extra)
	rdb := redisClient(t, redisURL)
	ctx := context.Background()
	key := h("X-Api-Key", f.Keys.Valid.Key)
	name := sharedKey(prefix, cache.CodecVersion, f.Keys.Valid.Key)

	if r := send(t, a, "/", key); r.status != 200 {
		t.Fatalf("before: %d", r.status)
	}
	saved, err := rdb.Get(ctx, name).Bytes()
	if err != nil {
		t.Fatal(err)
	}
	savedEpoch, _ := rdb.Get(ctx, prefix+cache.CodecVersion+":epoch").Result()

	testenv.Exec(t, f.DatabaseURL, `UPDATE apikey SET enabled = false WHERE id = $1`, f.Keys.Valid.ID)
	// A revokes: it advances the epoch, then deletes the entry it can name.
	since := time.Now()
	// (A may share the disabled record it then reads: any other content
	// means the old entry went.)
	for now, _ := rdb.Get(ctx, name).Bytes(); string(now) == string(saved); now, _ = rdb.Get(ctx, name).Bytes() {
		if time.Since(since) > 2*time.Second {
			t.Fatal("the revocation left the entry it could name in Redis")
		}
		send(t, a, "/", key)
	}
	// C hears of the revocation too; any miss shows it the new epoch.
	if r := send(t, c, "/", h("X-Api-Key", f.Keys.Valid2.Key)); r.status != 200 {
		t.Fatalf("valid2 on C: %d", r.status)
	}

	// The rollback.
	rdb.Set(ctx, name, saved, time.Hour)
	rdb.Set(ctx, prefix+cache.CodecVersion+":epoch", savedEpoch, 0)
	if r := send(t, c, "/", key); r.status != 401 || r.body.Code != "KEY_DISABLED" {
		t.Fatalf("after the rollback, gateway C: %d %s", r.status, r.raw)
	}
	c.WaitForLog(t, "epoch went backwards", 5*time.Second)
}

// A revocation that cannot advance the shared epoch (the Redis refuses
// writes) still takes effect on every gateway: the shared tier, which
// still holds the revoked entry, is not read until the epoch moves again.
func TestRevocationWithRedisRefusingWrites(t *testing.T) {
	t.Parallel()
	rs := testenv.StartRedis(t)
	f := seedWithTriggers(t, testenv.SeedOptions{})
	up := newUpstream(t)
	extra := "cache {\n\t\t\tttl 1h\n\t\t}"
	a := sharedGateway(t, f.DatabaseURL, rs.URL, "paused:", up, extra)
	b := sharedGateway(t, f.DatabaseURL, rs.URL, "paused:", up, extra)
	rdb := redisClient(t, rs.URL)
	ctx := context.Background()
	key := h("X-Api-Key", f.Keys.Valid.Key)
	for _, gw := range []*testenv.Caddy{a, b} {
		if r := send(t, gw, "/", key); r.status != 200 {
			t.Fatalf("before: %d", r.status)
		}
	}
	if err := rdb.Do(ctx, "CLIENT", "PAUSE", "10000", "WRITE").Err(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rdb.Do(context.Background(), "CLIENT", "UNPAUSE") })
	testenv.Exec(t, f.DatabaseURL, `UPDATE apikey SET enabled = false WHERE id = $1`, f.Keys.Valid.ID)
	since := time.Now()
	for _, gw := range []*testenv.Caddy{a, b} {
		for {
			r := send(t, gw, "/", key)
			if r.status == 401 {
				break
			}
			if time.Since(since) > 3*time.Second {
				t.Fatalf("still %d %v after the key was disabled, with the shared entry unrevokable", r.status, time.Since(since))
			}
		}
	}
	if n, _ := rdb.Exists(ctx, sharedKey("paused:", cache.CodecVersion, f.Keys.Valid.Key)).Result(); n != 1 {
		t.Fatal("the shared entry is gone: the test proves nothing")
	}
	a.WaitForLog(t, "could not advance the shared cache's epoch", 5*time.Second)
	rdb.Do(ctx, "CLIENT", "UNPAUSE")
	// Writes are back: the next misses advance the epoch (at most once a
	// second), the shared tier is read again, and the key stays revoked.
	since = time.Now()
	for i := 0; !strings.Contains(a.Logs(), "reading it again"); i++ {
		if time.Since(since) > 10*time.Second {
			t.Fatal("the shared tier was not used again")
		}
		send(t, a, "/", h("X-Api-Key", fmt.Sprintf("ba_unknown_%d", i)))
	}
	if r := send(t, a, "/", key); r.status != 401 {
		t.Fatalf("after the pause: %d", r.status)
	}
	if r := send(t, a, "/", h("X-Api-Key", f.Keys.Valid2.Key)); r.status != 200 {
		t.Fatalf("valid2 after the pause: %d", r.status)
	}
	if n, _ := rdb.Exists(ctx, sharedKey("paused:", cache.CodecVersion, f.Keys.Valid2.Key)).Result(); n != 1 {
		t.Fatal("not shared after the pause")
	}
}

// Invalidations relayed between gateways are sealed: a message published
// by someone without the key is dropped; a genuine one is applied.
func TestRelayDropsUnauthenticatedMessages(t *testing.T) {
	t.Parallel()
	redisURL := testenv.Require(t, "TEST_REDIS_URL")
	f := testenv.Seed(t, testenv.SeedOptions{}) // no triggers: the database tells nobody
	up := newUpstream(t)
	prefix := "bus-" + strings.ToLower(rand.Text()[:8]) + ":"
	deaf := sharedGateway(t, f.DatabaseURL, redisURL, prefix, up, "no_revocation_listener\n\t\tcache {\n\t\t\tttl 1h\n\t\t}")
	rdb := redisClient(t, redisURL)
	ctx := context.Background()
	key := cachedThenDisabled(t, deaf, f)
	channel := prefix + "v2:invalidations"
	for _, forged := range []string{
		fmt.Sprintf(`{"from":"x","t":1,"id":%q}`, f.Keys.Valid.ID),                             // before messages were sealed
		fmt.Sprintf(`{"from":"x","r":[{"t":1,"id":%q}]}`, f.Keys.Valid.ID),                     // today's, unsealed
		strings.Repeat("A", 32) + `{"from":"x","r":[{"t":5}]}`,                                 // a made-up seal
		string(sealWith(t, "another-secret-0123456789abcdefghijkl", channel, f.Keys.Valid.ID)), // another key
	} {
		if err := rdb.Publish(ctx, channel, forged).Err(); err != nil {
			t.Fatal(err)
		}
	}
	deaf.WaitForLog(t, "dropped invalidation messages that failed authentication", 5*time.Second)
	if r := send(t, deaf, "/", key); r.status != 200 {
		t.Fatalf("an unauthenticated message was applied: %d", r.status)
	}
	// The same message sealed with the gateways' own secret is applied.
	if err := rdb.Publish(ctx, channel, sealWith(t, testenv.Secret, channel, f.Keys.Valid.ID)).Err(); err != nil {
		t.Fatal(err)
	}
	since := time.Now()
	for send(t, deaf, "/", key).status != 401 {
		if time.Since(since) > 2*time.Second {
			t.Fatal("a genuine relayed invalidation was not applied")
		}
	}
}

// sealWith seals an invalidation of an API key as a gateway with secret
// would.
func sealWith(t *testing.T, secret, channel, keyID string) []byte {
	t.Helper()
	s, err := cache.NewSealer(secret)
	if err != nil {
		t.Fatal(err)
	}
	return s.Seal(channel, fmt.Appendf(nil, `{"from":"test","at":%d,"r":[{"t":%d,"id":%q}]}`, time.Now().UnixMilli(), cache.TargetAPIKey, keyID))
}

// After a Redis reconnection the gateway resubscribes, and forgets what it
// cached: what other gateways relayed meanwhile is lost.
func TestResubscriptionForgetsTheCache(t *testing.T) {
	t.Parallel()
	rs := testenv.StartRedis(t)
	f := testenv.Seed(t, testenv.SeedOptions{}) // no triggers
	up := newUpstream(t)
	gw := sharedGateway(t, f.DatabaseURL, rs.URL, "resub:", up, "no_revocation_listener\n\t\tcache {\n\t\t\tttl 1h\n\t\t}")
	rdb := redisClient(t, rs.URL)
	key := cachedThenDisabled(t, gw, f)
	if err := rdb.Do(context.Background(), "CLIENT", "KILL", "TYPE", "pubsub").Err(); err != nil {
		t.Fatal(err)
	}
	gw.WaitForLogCount(t, "listening for invalidations from other gateways", 2, 15*time.Second)
	if r := send(t, gw, "/", key); r.status != 401 {
		t.Fatalf("after resubscribing: %d, want the database's 401", r.status)
	}
}

// Two ways to bring a revoked key back through the shared Redis that a
// review found after the epoch was made monotonic: freezing the epoch at a
// value Redis scripts cannot count past, and setting it back before a
// replica starts (a new replica has seen no epoch). Neither works.
func TestRevokedKeysStayRevokedWhateverTheEpoch(t *testing.T) {
	t.Parallel()
	redisURL := testenv.Require(t, "TEST_REDIS_URL")
	f := seedWithTriggers(t, testenv.SeedOptions{})
	up := newUpstream(t)
	extra := "cache {\n\t\t\tttl 1h\n\t\t}"
	rdb := redisClient(t, redisURL)
	ctx := context.Background()

	// revoke serves key on gw, saves its shared entry, disables the key in
	// the database and waits until gw has revoked (the entry is deleted).
	revoke := func(t *testing.T, gw *testenv.Caddy, prefix string, key testenv.Key) (name string, saved []byte) {
		t.Helper()
		hdr := h("X-Api-Key", key.Key)
		if r := send(t, gw, "/", hdr); r.status != 200 {
			t.Fatalf("before: %d %s", r.status, r.raw)
		}
		name = sharedKey(prefix, cache.CodecVersion, key.Key)
		saved, _ = rdb.Get(ctx, name).Bytes()
		testenv.Exec(t, f.DatabaseURL, `UPDATE apikey SET enabled = false WHERE id = $1`, key.ID)
		since := time.Now()
		for now, _ := rdb.Get(ctx, name).Bytes(); (saved != nil && string(now) == string(saved)) || send(t, gw, "/", hdr).status != 401; now, _ = rdb.Get(ctx, name).Bytes() {
			if time.Since(since) > 3*time.Second {
				t.Fatal("the revocation did not happen")
			}
		}
		return name, saved
	}

	t.Run("epoch frozen at 2^60", func(t *testing.T) {
		prefix := "frozen-" + strings.ToLower(rand.Text()[:8]) + ":"
		a := sharedGateway(t, f.DatabaseURL, redisURL, prefix, up, extra)
		c := sharedGateway(t, f.DatabaseURL, redisURL, prefix, up, extra)
		rdb.Set(ctx, prefix+cache.CodecVersion+":epoch", "1152921504606846976", 0)
		for i, gw := range []*testenv.Caddy{a, c} {
			send(t, gw, "/", h("X-Api-Key", fmt.Sprintf("ba_probe_%d", i)))
		}
		name, saved := revoke(t, a, prefix, f.Keys.Valid)
		if saved != nil {
			rdb.Set(ctx, name, saved, time.Hour)
		}
		if r := send(t, c, "/", h("X-Api-Key", f.Keys.Valid.Key)); r.status != 401 {
			t.Fatalf("a disabled key is served again: %d", r.status)
		}
	})
	t.Run("epoch set back before a replica starts", func(t *testing.T) {
		prefix := "fresh-" + strings.ToLower(rand.Text()[:8]) + ":"
		a := sharedGateway(t, f.DatabaseURL, redisURL, prefix, up, extra)
		name, saved := revoke(t, a, prefix, f.Keys.Valid2)
		if saved == nil {
			t.Fatal("the key was not shared: the test proves nothing")
		}
		written := epochOf(t, saved)
		rdb.Set(ctx, name, saved, time.Hour)
		// The new replica's watchers advance the epoch as they connect:
		// start it two below the entry's epoch, and set the entry's epoch
		// again once it runs, as an attacker would.
		rdb.Set(ctx, prefix+cache.CodecVersion+":epoch", max(written, 2)-2, 0)
		d := sharedGateway(t, f.DatabaseURL, redisURL, prefix, up, extra)
		rdb.Set(ctx, prefix+cache.CodecVersion+":epoch", written, 0)
		rdb.Set(ctx, name, saved, time.Hour)
		if r := send(t, d, "/", h("X-Api-Key", f.Keys.Valid2.Key)); r.status != 401 {
			t.Fatalf("a new replica serves a disabled key: %d", r.status)
		}
	})
}

// A genuine relayed message, replayed later by someone who can subscribe,
// is not applied again.
func TestRelayedMessagesCannotBeReplayed(t *testing.T) {
	t.Parallel()
	redisURL := testenv.Require(t, "TEST_REDIS_URL")
	f := testenv.Seed(t, testenv.SeedOptions{}) // no triggers
	up := newUpstream(t)
	prefix := "replay-" + strings.ToLower(rand.Text()[:8]) + ":"
	deaf := sharedGateway(t, f.DatabaseURL, redisURL, prefix, up, "no_revocation_listener\n\t\tcache {\n\t\t\tttl 1h\n\t\t}")
	rdb := redisClient(t, redisURL)
	key := cachedThenDisabled(t, deaf, f)
	s, _ := cache.NewSealer(testenv.Secret)
	channel := prefix + "v2:invalidations"
	old := s.Seal(channel, fmt.Appendf(nil, `{"from":"test","at":%d,"r":[{"t":%d,"id":%q}]}`,
		time.Now().Add(-time.Hour).UnixMilli(), cache.TargetAPIKey, f.Keys.Valid.ID))
	rdb.Publish(context.Background(), channel, old)
	deaf.WaitForLog(t, "sent too long ago", 5*time.Second)
	if r := send(t, deaf, "/", key); r.status != 200 {
		t.Fatalf("a replayed message was applied: %d", r.status)
	}
}

// cachedThenDisabled has gw cache Alice's valid key, then disables it in
// the database without telling anyone (no triggers): gw still answers 200
// from its cache, and only an invalidation it accepts makes it ask again.
// It returns the key's header.
func cachedThenDisabled(t *testing.T, gw *testenv.Caddy, f *testenv.Fixture) http.Header {
	t.Helper()
	key := h("X-Api-Key", f.Keys.Valid.Key)
	if r := send(t, gw, "/", key); r.status != 200 {
		t.Fatalf("before: %d", r.status)
	}
	testenv.Exec(t, f.DatabaseURL, `UPDATE apikey SET enabled = false WHERE id = $1`, f.Keys.Valid.ID)
	if r := send(t, gw, "/", key); r.status != 200 {
		t.Fatalf("cached: %d (the test needs the cached record)", r.status)
	}
	return key
}
