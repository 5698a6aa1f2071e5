package secondary_test

import (
	"context"
	"crypto/rand"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/caddy-betterauth/caddy-betterauth/betterauth"
	"github.com/caddy-betterauth/caddy-betterauth/internal/storetest"
	"github.com/caddy-betterauth/caddy-betterauth/internal/testenv"
	"github.com/caddy-betterauth/caddy-betterauth/secondary"
	"github.com/caddy-betterauth/caddy-betterauth/store"
)

func setup(t *testing.T, opts testenv.SeedOptions) (*testenv.Fixture, redis.UniversalClient, store.DB, string) {
	t.Helper()
	redisURL := testenv.Require(t, "TEST_REDIS_URL")
	prefix := "ba-" + strings.ToLower(rand.Text()[:8]) + ":"
	opts.Redis, opts.RedisPrefix = redisURL, prefix
	f := testenv.Seed(t, opts)
	ropts, err := redis.ParseURL(redisURL)
	if err != nil {
		t.Fatal(err)
	}
	client := redis.NewClient(ropts)
	t.Cleanup(func() { client.Close() })
	db, err := store.Open(f.DatabaseURL, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return f, client, db, prefix
}

// Sessions and API keys written by @better-auth/redis-storage get the same
// decisions as the SQL stores give the same fixture.
func TestBetterAuthSecondaryStorage(t *testing.T) {
	t.Parallel()
	f, client, db, prefix := setup(t, testenv.SeedOptions{KeysInRedis: true})
	s, err := secondary.New(client, db, secondary.Options{Prefix: &prefix, Sessions: secondary.Storage, APIKeys: secondary.Storage})
	if err != nil {
		t.Fatal(err)
	}
	storetest.Run(t, s, f)

	// Keys really come from Redis: the SQL table is empty.
	if rec, err := db.Lookup(context.Background(), betterauth.NewLookup(betterauth.KindAPIKey, f.Keys.Valid.Key)); err != nil || rec.Found() {
		t.Fatalf("the key is in SQL too: %+v %v", rec, err)
	}

	// "Revoke all sessions" (Better-Auth 1.7.16+) marks the user.
	ctx := context.Background()
	l := betterauth.NewLookup(betterauth.KindSession, f.Users.Alice.Token)
	if rec, err := s.Lookup(ctx, l); err != nil || rec.Session == nil {
		t.Fatalf("before the mark: %+v %v", rec, err)
	}
	client.Set(ctx, prefix+"revoked-sessions-before-"+f.Users.Alice.ID, strconv.FormatInt(time.Now().Add(time.Second).UnixMilli(), 10), time.Minute)
	if rec, err := s.Lookup(ctx, l); err != nil || rec.Found() {
		t.Fatalf("after the mark: %+v %v", rec, err)
	}
}

// storeSessionInDatabase: sessions in both; storage first, SQL when storage
// has nothing, unless storage is authoritative (preserveSessionInDatabase).
func TestSessionsInStorageAndDatabase(t *testing.T) {
	t.Parallel()
	f, client, db, prefix := setup(t, testenv.SeedOptions{SessionsInDB: true})
	ctx := context.Background()
	l := betterauth.NewLookup(betterauth.KindSession, f.Users.Zoe.Token)
	client.Del(ctx, prefix+f.Users.Zoe.Token) // gone from storage, still in SQL
	for mode, found := range map[secondary.Mode]bool{secondary.StorageThenDatabase: true, secondary.Storage: false, secondary.Database: true} {
		s, _ := secondary.New(client, db, secondary.Options{Prefix: &prefix, Sessions: mode})
		rec, err := s.Lookup(ctx, l)
		if err != nil || (rec.Session != nil) != found {
			t.Errorf("mode %s: %+v %v, want found=%v", mode, rec, err, found)
		}
	}
	// Keys stay in SQL (the default storage).
	s, _ := secondary.New(client, db, secondary.Options{Prefix: &prefix, Sessions: secondary.Storage})
	if rec, err := s.Lookup(ctx, betterauth.NewLookup(betterauth.KindAPIKey, f.Keys.Valid.Key)); err != nil || rec.APIKey == nil {
		t.Fatalf("key from SQL: %+v %v", rec, err)
	}
}

// This Redis is a source of truth: when it is down, lookups fail (503).
func TestStorageDownIsAnError(t *testing.T) {
	t.Parallel()
	client := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1})
	defer client.Close()
	s, _ := secondary.New(client, nil, secondary.Options{Sessions: secondary.Storage})
	if _, err := s.Lookup(context.Background(), betterauth.NewLookup(betterauth.KindSession, strings.Repeat("t", 32))); err == nil {
		t.Fatal("no error with the storage down")
	}
	if _, err := secondary.New(client, nil, secondary.Options{APIKeys: "redis-ish"}); err == nil {
		t.Fatal("bad mode accepted")
	}
}

// Keyspace notifications name the storage key; the watcher turns it into
// the credential's digest without needing the credential.
func TestWatchMapsKeysToDigests(t *testing.T) {
	t.Parallel()
	redisURL := testenv.Require(t, "TEST_REDIS_URL")
	ropts, _ := redis.ParseURL(redisURL)
	client := redis.NewClient(ropts)
	defer client.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := client.ConfigSet(ctx, "notify-keyspace-events", "Kg$x").Err(); err != nil {
		t.Fatal(err)
	}
	prefix := "w-" + strings.ToLower(rand.Text()[:8]) + "*:" // a glob character in the prefix, escaped
	digests, users := make(chan [32]byte, 8), make(chan string, 8)
	done, ready := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		secondary.Watch(ctx, client, secondary.WatchOptions{Prefix: prefix, Ready: func() { close(ready) },
			Forget: func(d [32]byte) { digests <- d }, ForgetUser: func(id string) { users <- id }})
	}()
	<-ready
	const key, token = "ba_sgcryLxAZNSEehSEODGkbVrwreJKkSsEfciuHrogTDZBeKFjuPwWzTDKeEkrDGbp", "aoJx7uLCwsPeAyLVHnBVFjacXa1LpN7M"
	client.Set(ctx, prefix+"api-key:"+betterauth.HashAPIKey(key), "{}", 0)
	client.Set(ctx, prefix+"api-key:by-id:k1", "{}", 0) // an index: ignored
	client.Del(ctx, prefix+token)
	client.Set(ctx, prefix+token, "{}", 0)
	client.Set(ctx, prefix+"revoked-sessions-before-u1", "1", 0)
	client.Set(ctx, "elsewhere:"+token, "{}", 0) // another prefix: ignored
	for _, want := range [][32]byte{betterauth.NewLookup(betterauth.KindAPIKey, key).Digest, betterauth.NewLookup(betterauth.KindSession, token).Digest} {
		select {
		case d := <-digests:
			if d != want {
				t.Fatalf("digest %x, want %x", d, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("no notification")
		}
	}
	select {
	case u := <-users:
		if u != "u1" {
			t.Fatalf("user %q", u)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no user notification")
	}
	cancel()
	<-done
}

// After a reconnection the watcher says so again: keyspace events sent while
// it was away are lost, and the gateway forgets what it cached.
func TestWatchReportsResubscriptions(t *testing.T) {
	t.Parallel()
	rs := testenv.StartRedis(t)
	ropts, _ := redis.ParseURL(rs.URL)
	client := redis.NewClient(ropts)
	defer client.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	subscribed := make(chan struct{}, 4)
	done := make(chan struct{})
	go func() {
		defer close(done)
		secondary.Watch(ctx, client, secondary.WatchOptions{Prefix: "p:", Ready: func() { subscribed <- struct{}{} },
			Forget: func([32]byte) {}, ForgetUser: func(string) {}})
	}()
	for i := range 3 { // the first subscription, then two reconnections
		select {
		case <-subscribed:
		case <-time.After(15 * time.Second):
			t.Fatalf("subscription %d was not reported", i+1)
		}
		if i < 2 {
			if err := client.Do(ctx, "CLIENT", "KILL", "TYPE", "pubsub").Err(); err != nil {
				t.Fatal(err)
			}
		}
	}
	cancel()
	<-done
}
