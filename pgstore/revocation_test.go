package pgstore_test

import (
	"context"
	"encoding/json"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/caddy-betterauth/caddy-betterauth/betterauth"
	"github.com/caddy-betterauth/caddy-betterauth/internal/faultproxy"
	"github.com/caddy-betterauth/caddy-betterauth/internal/testenv"
	"github.com/caddy-betterauth/caddy-betterauth/pgstore"
)

func installTriggers(t *testing.T, dsn string, store *pgstore.Store) (uninstall string) {
	t.Helper()
	layout, err := store.Layout(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	in, un := pgstore.Triggers(layout, "")
	for range 2 { // idempotent
		testenv.Exec(t, dsn, in)
	}
	return un
}

// listen holds a connection LISTENing on the triggers' channel, and a
// context that bounds the test's waits on it.
func listen(t *testing.T, dsn string, bound time.Duration) (context.Context, *pgx.Conn) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	t.Cleanup(cancel)
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	if _, err := conn.Exec(ctx, "LISTEN "+pgstore.Channel); err != nil {
		t.Fatal(err)
	}
	return ctx, conn
}

// Better-Auth's own writes fire the triggers; the notifications name rows,
// never secrets.
func TestTriggersNotifyWithoutSecrets(t *testing.T) {
	t.Parallel()
	f := testenv.Seed(t, testenv.SeedOptions{})
	store, _ := pgstore.New(newPool(t, f.DatabaseURL, nil), pgstore.Options{})
	uninstall := installTriggers(t, f.DatabaseURL, store)

	ctx, conn := listen(t, f.DatabaseURL, 30*time.Second)
	testenv.RunSeed(t, f.DatabaseURL, nil, "disable-key", f.Keys.Valid.ID, f.Users.Alice.ID)
	testenv.RunSeed(t, f.DatabaseURL, nil, "revoke-session", f.Users.Zoe.Token)
	testenv.RunSeed(t, f.DatabaseURL, nil, "ban-user", f.Users.Eve.ID)

	want := map[pgstore.Invalidation]bool{
		{Kind: "apikey", ID: f.Keys.Valid.ID, UserID: f.Users.Alice.ID}:    false,
		{Kind: "session", ID: f.SessionIDs["zoe"], UserID: f.Users.Zoe.ID}: false,
		{Kind: "user", ID: f.Users.Eve.ID}:                                 false,
	}
	secrets := []string{f.Keys.Valid.Key, betterauth.HashAPIKey(f.Keys.Valid.Key), f.Users.Zoe.Token, f.Users.Zoe.Signed}
	for seen := 0; seen < len(want); {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			t.Fatalf("waiting for notifications (have %v): %v", want, err)
		}
		for _, s := range secrets {
			if strings.Contains(n.Payload, s) {
				t.Fatalf("a notification carries a secret: %s", n.Payload)
			}
		}
		var inv pgstore.Invalidation
		if err := json.Unmarshal([]byte(n.Payload), &inv); err != nil {
			t.Fatal(err)
		}
		if got, ok := want[inv]; ok && !got {
			want[inv] = true
			seen++
		}
	}

	testenv.Exec(t, f.DatabaseURL, uninstall)
	testenv.Exec(t, f.DatabaseURL, uninstall) // idempotent too
	var n int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'caddy_betterauth_%'`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("%d triggers left after uninstall (%v)", n, err)
	}
}

// The listener reconnects after the server restarts, and says so (so the
// cache can drop what it may have missed), then delivers notifications.
func TestListenerReconnects(t *testing.T) {
	t.Parallel()
	pg := testenv.StartPostgres(t)
	resets := make(chan struct{}, 4)
	invs := make(chan pgstore.Invalidation, 4)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		pgstore.Listen(ctx, pgstore.ListenOptions{
			DSN: pg.URL, MinBackoff: 50 * time.Millisecond, MaxBackoff: 200 * time.Millisecond,
			OnReset:      func() { resets <- struct{}{} },
			OnInvalidate: func(i pgstore.Invalidation) { invs <- i },
		})
	}()
	wait := func(what string, ch <-chan struct{}) {
		t.Helper()
		select {
		case <-ch:
		case <-time.After(20 * time.Second):
			t.Fatalf("no %s", what)
		}
	}
	wait("first connection", resets)
	pg.Stop(t)
	pg.Start(t)
	wait("reconnection", resets)
	testenv.Exec(t, pg.URL, `SELECT pg_notify('caddy_betterauth', '{"k":"apikey","id":"k1","u":"u1"}')`)
	select {
	case inv := <-invs:
		if inv != (pgstore.Invalidation{Kind: "apikey", ID: "k1", UserID: "u1"}) {
			t.Fatalf("got %+v", inv)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no notification after reconnecting")
	}
	cancel()
	wait("listener exit", done)
}

// The gateway's URL may carry pgxpool settings (pool_max_conns=...), which
// its own connections outside the pool must leave out: the server refuses
// unknown run-time parameters, and the listener would never connect.
func TestListenerTakesPoolSettings(t *testing.T) {
	t.Parallel()
	dsn := testenv.Require(t, "TEST_DATABASE_URL")
	sep := "?"
	if strings.Contains(dsn, "?") {
		sep = "&"
	}
	dsn += sep + "pool_max_conns=2&pool_max_conn_lifetime=1h"
	cfg, err := pgstore.ConnConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	for p := range cfg.RuntimeParams {
		if strings.HasPrefix(p, "pool_") {
			t.Errorf("run-time parameter %q would be sent to the server", p)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	connected := make(chan struct{}, 1)
	go pgstore.Listen(ctx, pgstore.ListenOptions{DSN: dsn, OnReset: func() {
		select {
		case connected <- struct{}{}:
		default:
		}
	}})
	select {
	case <-connected:
	case <-time.After(20 * time.Second):
		t.Fatal("the listener did not connect with pool settings in the URL")
	}
}

// A listener whose connection goes silent for good (a NAT or load balancer
// forgot the idle flow: nothing is closed, every byte is lost) notices by
// its ping, reconnects, and resets: whatever it missed is purged.
func TestListenerNoticesASilentConnection(t *testing.T) {
	t.Parallel()
	dsn := testenv.Require(t, "TEST_DATABASE_URL")
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	p, err := faultproxy.Start(u.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	u.Host = p.Addr()
	resets := make(chan struct{}, 8)
	invs := make(chan pgstore.Invalidation, 8)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go pgstore.Listen(ctx, pgstore.ListenOptions{
		DSN: u.String(), MinBackoff: 50 * time.Millisecond, MaxBackoff: 200 * time.Millisecond,
		PingEvery: 200 * time.Millisecond, PingTimeout: time.Second,
		OnReset:      func() { resets <- struct{}{} },
		OnInvalidate: func(i pgstore.Invalidation) { invs <- i },
	})
	wait := func(what string) {
		t.Helper()
		select {
		case <-resets:
		case <-time.After(20 * time.Second):
			t.Fatalf("no %s", what)
		}
	}
	wait("first connection")
	p.Set(faultproxy.Forget)
	p.Set(faultproxy.Pass) // the network is fine again; the listener's connection is not
	wait("reconnection after the connection went silent")
	testenv.Exec(t, dsn, `SELECT pg_notify('caddy_betterauth', '{"k":"apikey","id":"k2","u":"u2"}')`)
	select {
	case inv := <-invs:
		if inv.ID != "k2" {
			t.Fatalf("got %+v", inv)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no notification after reconnecting")
	}
}
