package gateway

import (
	"context"
	"database/sql"
	"io"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/caddy-betterauth/caddy-betterauth/betterauth"
	"github.com/caddy-betterauth/caddy-betterauth/cache"
	"github.com/caddy-betterauth/caddy-betterauth/demo"
)

// Gateways on one database and one shared Redis, with its default prefix,
// share entries only when they read the rows alike: a replica configured
// with disable_key_hashing, or without the app's secondary storage, reads
// records the others would not, and must not hand them over.
func TestSharedTierKeepsReadingRulesApart(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "auth.db")
	creds, err := demo.Create(context.Background(), path, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	mr := miniredis.RunT(t)
	base := Options{Database: "sqlite://" + path, Secret: "shared-test-secret-0123456789abcdefghijkl",
		APIKeyPrefixes: []string{demo.KeyPrefix}, Redis: &Redis{URL: "redis://" + mr.Addr()}}
	decide := func(g *betterauth.Gate, name, value string) betterauth.Reason {
		t.Helper()
		res := g.Decide(context.Background(), betterauth.HTTPHeader{name: {value}}, netip.Addr{})
		if res.Err != nil {
			t.Fatal(res.Err)
		}
		return res.Decision.Reason
	}
	// open opens a gateway and starts its watchers, which purge the cache
	// (and so advance the shared epoch) once they listen.
	open := func(o Options, listening ...string) *betterauth.Gate {
		t.Helper()
		heard := make(chan string, 64)
		logger := zap.New(zapcore.RegisterHooks(zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()),
			zapcore.AddSync(io.Discard), zap.InfoLevel), func(e zapcore.Entry) error {
			select {
			case heard <- e.Message:
			default:
			}
			return nil
		}))
		gw, err := Open(o, logger)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { gw.Close() })
		gate, err := gw.Gate(o, nil)
		if err != nil {
			t.Fatal(err)
		}
		decide(gate, "X-Api-Key", "ba_start_the_watchers")
		want := map[string]bool{"listening for invalidations from other gateways": true}
		for _, msg := range listening {
			want[msg] = true
		}
		timeout := time.After(10 * time.Second)
		for len(want) > 0 {
			select {
			case msg := <-heard:
				delete(want, msg)
			case <-timeout:
				t.Fatalf("the gateway did not log %v", want)
			}
		}
		// A read that raced the purges leaves the tier unread until the
		// next read advances the epoch: make that read now.
		decide(gate, "X-Api-Key", "ba_watchers_started")
		return gate
	}
	hashed, alike := open(base), open(base)
	storage := base
	storage.SecondaryStorage = &SecondaryStorage{URL: "redis://" + mr.Addr()} // holds no session
	fromStorage := open(storage, "watching secondary storage for revocations")
	plain := base
	plain.DisableKeyHashing = true
	plainKeys := open(plain)
	// A gateway does not read shared entries written within
	// cache.ClockSkew of its last purge.
	<-time.After(cache.ClockSkew)

	// What apikey.key holds, presented as a key: only a gateway that
	// takes keys as stored in plain text finds it.
	stored := betterauth.NewLookup(betterauth.KindAPIKey, creds.APIKey).KeyHash()
	if r := decide(plainKeys, "X-Api-Key", stored); r != betterauth.Allowed {
		t.Fatalf("the plain-key gateway: %v", r)
	}
	if r := decide(hashed, "X-Api-Key", stored); r != betterauth.InvalidAPIKey {
		t.Errorf("the stored hash, presented as a key to a hashing gateway: %v, want %v", r, betterauth.InvalidAPIKey)
	}

	// A session in the database only: a gateway reading sessions from
	// secondary storage does not know it. One configured alike does, from
	// the shared tier once the row is gone.
	if r := decide(hashed, "Authorization", "Bearer "+creds.SessionToken); r != betterauth.Allowed {
		t.Fatalf("the database gateway: %v", r)
	}
	rw, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer rw.Close()
	if _, err := rw.Exec(`DELETE FROM session WHERE id = ?`, creds.SessionID); err != nil {
		t.Fatal(err)
	}
	if r := decide(alike, "Authorization", "Bearer "+creds.SessionToken); r != betterauth.Allowed {
		t.Fatalf("a gateway configured alike did not read the shared entry: %v", r)
	}
	if r := decide(fromStorage, "Authorization", "Bearer "+creds.SessionToken); r != betterauth.InvalidSession {
		t.Errorf("a session only in the database, to a gateway reading secondary storage: %v, want %v", r, betterauth.InvalidSession)
	}
}
