package pgstore_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/caddy-betterauth/caddy-betterauth/betterauth"
	"github.com/caddy-betterauth/caddy-betterauth/internal/testenv"
	"github.com/caddy-betterauth/caddy-betterauth/pgstore"
)

type safeToRetry struct{}

func (safeToRetry) Error() string     { return "failed before sending" }
func (safeToRetry) SafeToRetry() bool { return true }

func TestConnectionLost(t *testing.T) {
	t.Parallel()
	// A real failed connection attempt: nothing was lost, the server is not
	// there.
	_, connectErr := pgconn.Connect(context.Background(), fmt.Sprintf("postgres://nobody@127.0.0.1:%d/none?connect_timeout=5", testenv.FreePort(t)))
	if connectErr == nil {
		t.Fatal("connected to a free port")
	}
	wrap := func(err error) error { return fmt.Errorf("pgstore: api key lookup: %w", err) }
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"EOF", io.EOF, true},
		{"unexpected EOF, wrapped", wrap(io.ErrUnexpectedEOF), true},
		{"admin shutdown", &pgconn.PgError{Code: "57P01"}, true},
		{"crash shutdown", wrap(&pgconn.PgError{Code: "57P02"}), true},
		{"cannot connect now", &pgconn.PgError{Code: "57P03"}, true},
		{"connection failure", &pgconn.PgError{Code: "08006"}, true},
		{"connection does not exist", &pgconn.PgError{Code: "08003"}, true},
		{"read reset", wrap(&net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}), true},
		{"write broken pipe", &net.OpError{Op: "write", Net: "tcp", Err: os.NewSyscallError("write", syscall.EPIPE)}, true},
		{"other read error", &net.OpError{Op: "read", Net: "tcp", Err: errors.New("weird")}, true},
		{"closed conn", wrap(pgconn.ErrConnClosed), true},
		{"closed socket", net.ErrClosed, true},
		{"safe to retry", wrap(safeToRetry{}), true},

		{"undefined table", &pgconn.PgError{Code: "42P01"}, false},
		{"permission denied", wrap(&pgconn.PgError{Code: "42501"}), false},
		{"query canceled", &pgconn.PgError{Code: "57014"}, false},
		{"too many connections", &pgconn.PgError{Code: "53300"}, false},
		{"no rows", pgx.ErrNoRows, false},
		{"plain error", errors.New("api key row: bad"), false},
		{"canceled", wrap(context.Canceled), false},
		{"deadline", context.DeadlineExceeded, false},
		{"deadline and EOF", errors.Join(context.DeadlineExceeded, io.EOF), false},
		{"read timeout", &net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded}, false},
		{"dial refused", &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}, false},
		{"failed connection attempt", wrap(connectErr), false},
	} {
		if got := pgstore.ConnectionLost(tc.err); got != tc.want {
			t.Errorf("%s: ConnectionLost(%v) = %v, want %v", tc.name, tc.err, got, tc.want)
		}
	}
}

// failing is a DBTX whose every query fails with err.
type failing struct {
	err     error
	queries int
}

func (f *failing) Query(context.Context, string, ...any) (pgx.Rows, error) {
	f.queries++
	return nil, f.err
}

func (f *failing) SendBatch(context.Context, *pgx.Batch) pgx.BatchResults {
	panic("no batch without a layout")
}

// resettable is a failing pool that can drop its connections.
type resettable struct {
	failing
	resets int
}

func (r *resettable) Reset() { r.resets++ }

// A read is retried once, and only once, when its connection is gone; never
// for other errors nor once the caller has given up.
func TestRetryOnlyOnceAndOnlyForLostConnections(t *testing.T) {
	t.Parallel()
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	for _, tc := range []struct {
		name                string
		ctx                 context.Context
		err                 error
		queries, wantResets int
	}{
		{"lost connection", context.Background(), io.ErrUnexpectedEOF, 2, 1},
		{"server shut down", context.Background(), &pgconn.PgError{Code: "57P01"}, 2, 1},
		{"query error", context.Background(), &pgconn.PgError{Code: "42501"}, 1, 0},
		{"caller gave up", canceled, io.ErrUnexpectedEOF, 1, 0},
	} {
		db := &resettable{failing: failing{err: tc.err}}
		store, err := pgstore.New(db, pgstore.Options{})
		if err != nil {
			t.Fatal(err)
		}
		// The first lookup reads the catalog: that is the query that fails.
		if _, err := store.Lookup(tc.ctx, betterauth.NewLookup(betterauth.KindAPIKey, "k")); !errors.Is(err, tc.err) {
			t.Errorf("%s: Lookup error %v, want %v", tc.name, err, tc.err)
		}
		if db.queries != tc.queries || db.resets != tc.wantResets {
			t.Errorf("%s: Lookup sent %d queries and reset %d times, want %d and %d", tc.name, db.queries, db.resets, tc.queries, tc.wantResets)
		}
		db.queries, db.resets = 0, 0
		if _, err := store.User(tc.ctx, "u1"); !errors.Is(err, tc.err) {
			t.Errorf("%s: User error %v", tc.name, err)
		}
		if db.queries != tc.queries || db.resets != tc.wantResets {
			t.Errorf("%s: User sent %d queries and reset %d times, want %d and %d", tc.name, db.queries, db.resets, tc.queries, tc.wantResets)
		}
	}
	// A DBTX without Reset (a *pgx.Conn, a pgx.Tx) is simply read again.
	db := &failing{err: io.EOF}
	store, _ := pgstore.New(db, pgstore.Options{})
	if _, err := store.Lookup(context.Background(), betterauth.NewLookup(betterauth.KindSession, "k")); !errors.Is(err, io.EOF) || db.queries != 2 {
		t.Errorf("without Reset: %d queries, %v", db.queries, err)
	}
}

// The server ends the pool's connection (as a restart does) between two
// lookups: the next lookup still answers, on a new connection, whichever
// statement it sends first: the catalog, an API-key or session query, the
// pipelined batch, or a user.
func TestLookupSurvivesATerminatedConnection(t *testing.T) {
	t.Parallel()
	f := testenv.Seed(t, testenv.SeedOptions{})
	const app = "pgstore-retry-test"
	cfg, err := pgxpool.ParseConfig(f.DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxConns = 1
	cfg.ConnConfig.RuntimeParams["application_name"] = app
	c := &counter{}
	cfg.ConnConfig.Tracer = c
	// pgxpool pings a connection idle for more than a second before handing
	// it out, which would hide the dead connection on a slow machine.
	cfg.ShouldPing = func(context.Context, pgxpool.ShouldPingParams) bool { return false }
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	ctx := context.Background()
	terminate := func() {
		t.Helper()
		admin, err := pgx.Connect(ctx, f.DatabaseURL)
		if err != nil {
			t.Fatal(err)
		}
		defer admin.Close(ctx)
		var n int
		// With a timeout, pg_terminate_backend returns once the backend has
		// exited.
		if err := admin.QueryRow(ctx, `SELECT count(*) FILTER (WHERE pg_terminate_backend(pid, 10000)) FROM pg_stat_activity
WHERE application_name = $1 AND datname = current_database()`, app).Scan(&n); err != nil || n != 1 {
			t.Fatalf("terminated %d connections: %v", n, err)
		}
	}

	store, err := pgstore.New(pool, pgstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, "SELECT 1"); err != nil { // open the connection
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		l      betterauth.Lookup
		userID string
	}{
		{"catalog, then api key", betterauth.NewLookup(betterauth.KindAPIKey, f.Keys.Valid.Key), f.Users.Alice.ID},
		{"api key", betterauth.NewLookup(betterauth.KindAPIKey, f.Keys.Zoe.Key), f.Users.Zoe.ID},
		{"session", betterauth.NewLookup(betterauth.KindSession, f.Users.Eve.Token), f.Users.Eve.ID},
		{"key or session, one batch", betterauth.NewLookup(betterauth.KindEither, f.Users.Zoe.Token), f.Users.Zoe.ID},
		{"unknown key", betterauth.NewLookup(betterauth.KindAPIKey, "ba_unknown"), ""},
	} {
		terminate()
		conns := pool.Stat().NewConnsCount()
		rec, err := store.Lookup(ctx, tc.l)
		if err != nil {
			t.Fatalf("%s after the connection was terminated: %v", tc.name, err)
		}
		var got string
		switch {
		case rec.APIKey != nil:
			got = rec.APIKey.User.ID
		case rec.Session != nil:
			got = rec.Session.User.ID
		}
		if got != tc.userID {
			t.Errorf("%s: user %q, want %q", tc.name, got, tc.userID)
		}
		if n := pool.Stat().NewConnsCount() - conns; n != 1 {
			t.Errorf("%s: %d new connections, want 1", tc.name, n)
		}
	}
	terminate()
	if u, err := store.User(ctx, f.Users.Alice.ID); err != nil || u == nil || u.Email != f.Users.Alice.Email {
		t.Fatalf("User after the connection was terminated: %+v, %v", u, err)
	}
	// Back to normal: one statement per lookup, no retry.
	q, b := c.queries.Load(), c.batches.Load()
	if _, err := store.Lookup(ctx, betterauth.NewLookup(betterauth.KindAPIKey, f.Keys.Valid2.Key)); err != nil {
		t.Fatal(err)
	}
	if dq, db := c.queries.Load()-q, c.batches.Load()-b; dq+db != 1 {
		t.Errorf("a lookup on a live connection sent %d queries and %d batches", dq, db)
	}
}
