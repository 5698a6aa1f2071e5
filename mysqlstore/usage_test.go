package mysqlstore_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-betterauth/caddy-betterauth/betterauth"
	"github.com/caddy-betterauth/caddy-betterauth/internal/testenv"
	"github.com/caddy-betterauth/caddy-betterauth/mysqlstore"
	"github.com/caddy-betterauth/caddy-betterauth/usage"
)

// betterAuthDDL are Better-Auth's own tables on MySQL (Kysely's
// migrations): camelCase, datetime(3), booleans as tinyint(1).
var betterAuthDDL = []string{
	"CREATE TABLE `user` (`id` varchar(36) NOT NULL PRIMARY KEY, `name` text NOT NULL, `email` varchar(255) NOT NULL UNIQUE, `emailVerified` boolean NOT NULL, `image` text, `createdAt` datetime(3) NOT NULL, `updatedAt` datetime(3) NOT NULL)",
	"CREATE TABLE `session` (`id` varchar(36) NOT NULL PRIMARY KEY, `expiresAt` datetime(3) NOT NULL, `token` varchar(255) NOT NULL UNIQUE, `createdAt` datetime(3) NOT NULL, `updatedAt` datetime(3) NOT NULL, `ipAddress` text, `userAgent` text, `userId` varchar(36) NOT NULL)",
	apikeyDDL,
}

// usageStore opens dsn as a gateway counting uses does: the lookups on a
// read-only pool, the claims on a writable one.
func usageStore(t testing.TB, dsn string) (claims *mysqlstore.Usage, writes *sql.DB) {
	t.Helper()
	db, err := mysqlstore.Open(dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	s, err := mysqlstore.New(db, mysqlstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	w, err := mysqlstore.OpenWritable(dsn, 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	return mysqlstore.NewUsage(w, s.Layout), w
}

func insertKey(t testing.TB, dsn, id, cols string) {
	t.Helper()
	testenv.Exec(t, dsn, "INSERT INTO `apikey` (`id`, `referenceId`, `key`, `enabled`, `createdAt`, `updatedAt`"+cols+
		") VALUES (?, 'u1', ?, 1, UTC_TIMESTAMP(3) - INTERVAL 1 HOUR, UTC_TIMESTAMP(3) - INTERVAL 1 HOUR"+
		strings.Repeat(", ?", strings.Count(cols, ","))+")", append([]any{id, "hash-" + id}, keyValues[cols]...)...)
}

// keyValues are the values of insertKey's column lists.
var keyValues = map[string][]any{
	"":                                  nil,
	", `remaining`, `rateLimitEnabled`": {25, 0},
	", `remaining`, `rateLimitTimeWindow`, `rateLimitMax`":            {5, 60000, 2},
	", `remaining`, `refillAmount`, `refillInterval`, `lastRefillAt`": {0, 3, 1000, time.Now().Add(-2 * time.Second).UTC()},
}

// Counting on Better-Auth's own table: the rules' decisions, the counters
// and dates written as mysql2 with timezone "Z" writes Better-Auth's (UTC
// wall time at the millisecond), only the columns that change, and an id
// compared byte for byte.
func TestClaimUsage(t *testing.T) {
	t.Parallel()
	dsn := newDatabase(t, betterAuthDDL...)
	insertKey(t, dsn, "quota", ", `remaining`, `rateLimitTimeWindow`, `rateLimitMax`")
	insertKey(t, dsn, "refill", ", `remaining`, `refillAmount`, `refillInterval`, `lastRefillAt`")
	claims, _ := usageStore(t, dsn)
	check := testenv.OpenMySQL(t, dsn)
	ctx := context.Background()
	rules := usage.Rules{}
	claim := func(id string) (betterauth.Usage, time.Time, bool) {
		t.Helper()
		row, now, found, err := claims.ClaimUsage(ctx, id, rules, time.Now)
		if err != nil {
			t.Fatal(err)
		}
		u, _ := rules.Plan(row, now)
		return u, now, found
	}
	stored := func(id, col string) (text string, ms int64) {
		t.Helper()
		// The session's time_zone is the server's (UTC here); UNIX_TIMESTAMP
		// reads the instant whatever the column's type.
		err := check.QueryRow(fmt.Sprintf("SELECT DATE_FORMAT(`%[1]s`, '%%Y-%%m-%%d %%H:%%i:%%s.%%f'), ROUND(UNIX_TIMESTAMP(CONVERT_TZ(`%[1]s`, '+00:00', @@session.time_zone)) * 1000) FROM `apikey` WHERE `id` = ?", col), id).Scan(&text, &ms)
		if err != nil {
			t.Fatal(err)
		}
		return text, ms
	}
	counters := func(id string) (remaining, requests int64) {
		t.Helper()
		if err := check.QueryRow("SELECT `remaining`, COALESCE(`requestCount`, 0) FROM `apikey` WHERE `id` = ?", id).Scan(&remaining, &requests); err != nil {
			t.Fatal(err)
		}
		return remaining, requests
	}

	u, now, found := claim("quota")
	if !found || u.Reason != betterauth.Allowed || u.Remaining != 4 || u.Left != 1 {
		t.Fatalf("first use: %+v found %v", u, found)
	}
	if r, n := counters("quota"); r != 4 || n != 1 {
		t.Errorf("row after one use: remaining %d, requestCount %d", r, n)
	}
	for _, col := range []string{"lastRequest", "updatedAt"} {
		text, ms := stored("quota", col)
		if want := now.UTC().Format("2006-01-02 15:04:05.000") + "000"; text != want || ms != now.UnixMilli() {
			t.Errorf("%s stored as %s (%d ms), want %s (%d ms)", col, text, ms, want, now.UnixMilli())
		}
	}
	claim("quota")
	if u, _, _ := claim("quota"); u.Reason != betterauth.RateLimited || u.Remaining != 2 {
		t.Fatalf("third use within the window: %+v", u)
	}
	// Better-Auth 1.7 spends the remaining use before reading the rate
	// limit, and writes nothing else.
	_, last := stored("quota", "lastRequest")
	if r, n := counters("quota"); r != 2 || n != 2 {
		t.Errorf("after the refused use: remaining %d, requestCount %d", r, n)
	}
	if _, again := stored("quota", "lastRequest"); again != last {
		t.Errorf("a refused use moved lastRequest")
	}

	// A refill, due: refillAmount less this use, from now.
	u, now, _ = claim("refill")
	if u.Reason != betterauth.Allowed || u.Remaining != 2 {
		t.Fatalf("refill: %+v", u)
	}
	if _, ms := stored("refill", "lastRefillAt"); ms != now.UnixMilli() {
		t.Errorf("lastRefillAt %d, want %d", ms, now.UnixMilli())
	}

	// Ids are compared byte for byte, though the column's collation
	// ignores case.
	if _, _, found := claim("QUOTA"); found {
		t.Error("QUOTA claimed the row of quota")
	}
	if _, _, found := claim("nosuchkey"); found {
		t.Error("an unknown id found a row")
	}
	if r, _ := counters("quota"); r != 2 {
		t.Errorf("misses wrote: remaining %d", r)
	}

	// A use is four round trips once warm: BEGIN, the locking read and
	// the update as statements prepared once per connection, COMMIT.
	insertKey(t, dsn, "plain", "")
	claims, w := usageStore(t, dsn)
	w.SetMaxOpenConns(1) // one session, whose counters status reads
	status := func() map[string]int {
		rows, err := w.QueryContext(ctx, "SHOW SESSION STATUS WHERE Variable_name IN ('Com_stmt_prepare', 'Com_stmt_execute', 'Com_begin', 'Com_commit', 'Questions')")
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		m := map[string]int{}
		for rows.Next() {
			var name string
			var n int
			if err := rows.Scan(&name, &n); err != nil {
				t.Fatal(err)
			}
			m[name] = n
		}
		return m
	}
	claim("plain")
	s0 := status()
	for range 10 {
		claim("plain")
	}
	s1 := status()
	for name, want := range map[string]int{"Com_stmt_prepare": 0, "Com_stmt_execute": 20, "Com_begin": 10, "Com_commit": 10, "Questions": 41} {
		if got := s1[name] - s0[name]; got != want {
			t.Errorf("10 uses: %s %d, want %d", name, got, want)
		}
	}
}

// The row lock, not the gateway's per-key queue, keeps uses exact: N
// claims at once from two pools (two gateways) on a key with R remaining
// spend exactly min(N, R), each remaining value seen once, never below 0.
func TestClaimUsageConcurrent(t *testing.T) {
	t.Parallel()
	const n, r = 40, 25
	dsn := newDatabase(t, betterAuthDDL...)
	insertKey(t, dsn, "k", ", `remaining`, `rateLimitEnabled`")
	a, _ := usageStore(t, dsn)
	b, _ := usageStore(t, dsn)
	var mu sync.Mutex
	seen := map[int64]int{}
	allowed, refused := 0, 0
	var wg sync.WaitGroup
	for i := range n {
		c := a
		if i%2 == 1 {
			c = b
		}
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			row, now, found, err := c.ClaimUsage(ctx, "k", usage.Rules{}, time.Now)
			if err != nil || !found {
				t.Errorf("claim: found %v, %v", found, err)
				return
			}
			u, _ := usage.Rules{}.Plan(row, now)
			mu.Lock()
			defer mu.Unlock()
			seen[row.Remaining]++
			if u.Reason == betterauth.Allowed {
				allowed++
			} else {
				refused++
			}
		})
	}
	wg.Wait()
	if allowed != min(n, r) || refused != n-min(n, r) {
		t.Errorf("%d allowed, %d refused; want %d and %d", allowed, refused, min(n, r), n-min(n, r))
	}
	for v := int64(r); v > 0; v-- {
		if seen[v] != 1 {
			t.Errorf("remaining %d read by %d uses, want 1", v, seen[v])
		}
	}
	if seen[0] != n-r {
		t.Errorf("remaining 0 read by %d uses, want %d", seen[0], n-r)
	}
	var left int64
	if err := testenv.OpenMySQL(t, dsn).QueryRow("SELECT `remaining` FROM `apikey` WHERE `id` = 'k'").Scan(&left); err != nil || left != 0 {
		t.Errorf("remaining %d after, want 0 (%v)", left, err)
	}
}

// A use waits for the row while the app holds it, within its context; it
// then goes through once the app commits. The statements use the primary
// key, so the lock is the row's, not the table's.
func TestClaimUsageWaitsForTheRowWithinItsContext(t *testing.T) {
	t.Parallel()
	dsn := newDatabase(t, betterAuthDDL...)
	insertKey(t, dsn, "held", ", `remaining`, `rateLimitEnabled`")
	insertKey(t, dsn, "free", ", `remaining`, `rateLimitEnabled`")
	claims, _ := usageStore(t, dsn)
	app := testenv.OpenMySQL(t, dsn)
	tx, err := app.Begin()
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if _, err := tx.Exec("SELECT `id` FROM `apikey` WHERE `id` = 'held' FOR UPDATE"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if _, _, _, err := claims.ClaimUsage(ctx, "held", usage.Rules{}, time.Now); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("a use of a held row: %v, want the context's deadline", err)
	}
	// Another key's row is not held.
	if _, _, found, err := claims.ClaimUsage(context.Background(), "free", usage.Rules{}, time.Now); err != nil || !found {
		t.Errorf("another key: found %v, %v", found, err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	row, _, found, err := claims.ClaimUsage(context.Background(), "held", usage.Rules{}, time.Now)
	if err != nil || !found || row.Remaining != 25 {
		t.Errorf("after the app's commit: %+v found %v, %v", row, found, err)
	}

	// The plan: the primary key, one row.
	db, _ := mysqlstore.Open(dsn)
	defer db.Close()
	s, _ := mysqlstore.New(db, mysqlstore.Options{})
	l, err := s.Layout(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	sqls, err := l.BuildUsage(mysqlstore.Dialect, true)
	if err != nil {
		t.Fatal(err)
	}
	var id, selectType, table, typ string
	var possible, key, keyLen, ref, extra sql.NullString
	var rows sql.NullInt64
	// EXPLAIN of a locking read is refused on a read-only session.
	w, _ := mysqlstore.OpenWritable(dsn, time.Second)
	defer w.Close()
	if err := w.QueryRow("EXPLAIN "+strings.Replace(sqls.Select, "?", "'held'", 1)).Scan(&id, &selectType, &table, &typ, &possible, &key, &keyLen, &ref, &rows, &extra); err != nil {
		t.Fatal(err)
	}
	if key.String != "PRIMARY" || typ == "ALL" || rows.Int64 != 1 {
		t.Errorf("the locking read's plan: type %s, key %v, rows %v (%s)", typ, key, rows, sqls.Select)
	}
}

// Counting on the rows of real Better-Auth (mysql2, Kysely), snake_case
// with timestamp(3) as Drizzle's MySQL schema has: the dates read back as
// the instants written.
func TestClaimUsageSnakeTimestamps(t *testing.T) {
	t.Parallel()
	f := testenv.Seed(t, testenv.SeedOptions{MySQL: true, Snake: true})
	claims, _ := usageStore(t, f.DatabaseURL)
	ctx := context.Background()
	id := f.Keys.Limited.ID
	row0, now, found, err := claims.ClaimUsage(ctx, id, usage.Rules{}, time.Now)
	if err != nil || !found {
		t.Fatalf("found %v, %v", found, err)
	}
	row1, _, _, err := claims.ClaimUsage(ctx, id, usage.Rules{}, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	if _, w := (usage.Rules{}).Plan(row0, now); w.Set&usage.ColLastRequest == 0 || !row1.LastRequest.Equal(w.LastRequest) {
		t.Errorf("lastRequest read back %v, written %v (%v)", row1.LastRequest, w.LastRequest, w.Set)
	}
	if row1.RequestCount != row0.RequestCount+1 && row1.RequestCount != 1 {
		t.Errorf("requestCount %d after %d", row1.RequestCount, row0.RequestCount)
	}
	var typ string
	if err := testenv.OpenMySQL(t, f.DatabaseURL).QueryRow("SELECT column_type FROM information_schema.columns WHERE table_schema = DATABASE() AND table_name = 'apikey' AND column_name = 'last_request'").Scan(&typ); err != nil || typ != "timestamp(3)" {
		t.Errorf("last_request is %q (%v), want timestamp(3)", typ, err)
	}
}

// BenchmarkClaimUsage is one use counted on MariaDB over loopback: a
// transaction of four statements (BEGIN, the locking read, the update,
// COMMIT), each one round trip.
func BenchmarkClaimUsage(b *testing.B) {
	dsn := newDatabase(b, betterAuthDDL...)
	insertKey(b, dsn, "k", "")
	claims, _ := usageStore(b, dsn)
	ctx := context.Background()
	for b.Loop() {
		if _, _, _, err := claims.ClaimUsage(ctx, "k", usage.Rules{}, time.Now); err != nil {
			b.Fatal(err)
		}
	}
}
