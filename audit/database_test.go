package audit

import (
	"context"
	"database/sql"
	"net/netip"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/caddy-betterauth/caddy-betterauth/internal/testenv"
)

func TestParseTable(t *testing.T) {
	pg, lite := "postgres://x@127.0.0.1/db", "sqlite:///tmp/auth.db"
	for _, c := range []struct {
		dsn, name, want string
	}{
		{pg, "", `"caddy_betterauth"."audit_events"`},
		{pg, "audit", `"audit"`},
		{pg, "ops.Audit_2", `"ops"."Audit_2"`},
		{lite, "", `"caddy_betterauth_audit_events"`},
	} {
		tb, err := ParseTable(c.dsn, c.name)
		if err != nil || tb.String() != c.want {
			t.Errorf("%s %q: %v %v", c.dsn, c.name, tb, err)
		}
	}
	for _, bad := range []string{`a"b`, "a;drop table x", "a.b.c", "1a", "a b", ".a", "a."} {
		if _, err := ParseTable(pg, bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if _, err := ParseTable(lite, "main.audit"); err == nil {
		t.Error("a schema accepted on SQLite")
	}
}

func sample() []Event {
	now := time.Now().Truncate(time.Millisecond)
	return []Event{
		{Time: now, FrontEnd: "caddy", Method: "api_key", Decision: Allow, Code: "OK", Status: 200, UserID: "u1", KeyID: "k1",
			Fingerprint: "0a1b2c3d", ClientIP: netip.MustParseAddr("203.0.113.7"), Host: "mcp.example.com", Path: "/mcp",
			MCPMethod: "tools/call", MCPName: "search"},
		{Time: now, FrontEnd: "ext_authz", Decision: Deny, Code: "MISSING_CREDENTIAL", Status: 401},
	}
}

func TestPostgresWriter(t *testing.T) {
	db := testenv.NewDatabase(t)
	tb, _ := ParseTable(db, "")
	testenv.Exec(t, db, tb.DDL())
	testenv.Exec(t, db, tb.DDL()) // idempotent
	w, err := OpenWriter(db, tb)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := w.Write(context.Background(), sample()); err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var n int
	var ip, key, method *string
	err = conn.QueryRow(context.Background(), `SELECT count(*) OVER (), host(client_ip), key_id, method FROM `+tb.String()+` ORDER BY id LIMIT 1`).Scan(&n, &ip, &key, &method)
	if err != nil || n != 2 || ip == nil || *ip != "203.0.113.7" || *key != "k1" || *method != "api_key" {
		t.Fatalf("read back: %v %d %v %v", err, n, ip, key)
	}
	var nulls int
	if err := conn.QueryRow(context.Background(), `SELECT count(*) FROM `+tb.String()+` WHERE method IS NULL AND user_id IS NULL AND client_ip IS NULL`).Scan(&nulls); err != nil || nulls != 1 {
		t.Fatalf("empty fields are not NULL: %d %v", nulls, err)
	}

	// A table that is not there: the database refuses the batch, which is
	// not worth retrying.
	missing, _ := ParseTable(db, "nowhere")
	w2, _ := OpenWriter(db, missing)
	defer w2.Close()
	if err := w2.Write(context.Background(), sample()); err == nil || !refused(err) {
		t.Fatalf("missing table: %v", err)
	}
}

func TestSQLiteWriter(t *testing.T) {
	dsn := "sqlite://" + filepath.Join(t.TempDir(), "auth.db")
	raw, err := sql.Open("sqlite", strings.TrimPrefix(dsn, "sqlite://"))
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	tb, _ := ParseTable(dsn, "")
	if _, err := raw.Exec(tb.DDL()); err != nil {
		t.Fatal(err)
	}
	w, err := OpenWriter(dsn, tb)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := w.Write(context.Background(), sample()); err != nil {
		t.Fatal(err)
	}
	var n int
	var ip, at string
	if err := raw.QueryRow(`SELECT count(*) OVER (), client_ip, occurred_at FROM `+tb.String()+` ORDER BY id LIMIT 1`).Scan(&n, &ip, &at); err != nil || n != 2 || ip != "203.0.113.7" {
		t.Fatalf("read back: %v %d %q", err, n, ip)
	}
	if _, err := time.Parse(time.RFC3339, at); err != nil {
		t.Errorf("occurred_at %q: %v", at, err)
	}
	missing, _ := ParseTable(dsn, "nowhere")
	w2, _ := OpenWriter(dsn, missing)
	defer w2.Close()
	if err := w2.Write(context.Background(), sample()); err == nil || !refused(err) {
		t.Fatalf("missing table: %v", err)
	}
}

// A batch that waits on a lock past the role's lock_timeout (a migration
// holding the table), or reaches a server that went read-only (a
// failover), is the server's state, not the batch's: retried, not
// dropped.
func TestPostgresWriterTransientRefusals(t *testing.T) {
	db := testenv.NewDatabase(t)
	tb, _ := ParseTable(db, "")
	testenv.Exec(t, db, tb.DDL())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	write := func(opt string) error {
		sep := "?"
		if strings.Contains(db, "?") {
			sep = "&"
		}
		w, err := OpenWriter(db+sep+"options="+strings.ReplaceAll(url.QueryEscape(opt), "+", "%20"), tb)
		if err != nil {
			t.Fatal(err)
		}
		defer w.Close()
		return w.Write(ctx, sample())
	}
	if err := write("-c default_transaction_read_only=on"); err == nil || refused(err) {
		t.Errorf("read-only: %v (refused: %v), want an error worth retrying", err, refused(err))
	}
	holder, err := pgx.Connect(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close(context.Background())
	tx, err := holder.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(context.Background())
	if _, err := tx.Exec(ctx, "LOCK TABLE "+tb.String()+" IN ACCESS EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	if err := write("-c lock_timeout=50"); err == nil || refused(err) {
		t.Errorf("lock timeout: %v (refused: %v), want an error worth retrying", err, refused(err))
	}
}

// A table name as long as PostgreSQL takes still gets its three indexes.
func TestLongTableIndexes(t *testing.T) {
	db := testenv.NewDatabase(t)
	name := strings.Repeat("a", 63)
	tb, err := ParseTable(db, name)
	if err != nil {
		t.Fatal(err)
	}
	testenv.Exec(t, db, tb.DDL())
	conn, err := pgx.Connect(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var n int
	if err := conn.QueryRow(context.Background(), `SELECT count(*) FROM pg_indexes WHERE tablename = $1 AND indexname NOT LIKE '%_pkey'`, name).Scan(&n); err != nil || n != 3 {
		t.Fatalf("%d indexes (%v), want 3:\n%s", n, err, tb.DDL())
	}
}

// A gateway connecting as a role of its own writes events with exactly
// what Grant gives it (the identity column needs no grant on its
// sequence), and reads nothing.
func TestPostgresWriterWithGrantedRole(t *testing.T) {
	db := testenv.NewDatabase(t)
	tb, _ := ParseTable(db, "")
	role := "gw_" + strings.ToLower(strings.ReplaceAll(t.Name(), "Test", ""))[:12]
	testenv.Exec(t, db, `DROP ROLE IF EXISTS `+role)
	testenv.Exec(t, db, `CREATE ROLE `+role+` LOGIN`)
	t.Cleanup(func() {
		testenv.Exec(t, db, `DROP OWNED BY `+role)
		testenv.Exec(t, db, `DROP ROLE `+role)
	})
	testenv.Exec(t, db, tb.DDL()+tb.Grant(role))
	u, err := url.Parse(db)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.User(role)
	w, err := OpenWriter(u.String(), tb)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := w.Write(context.Background(), sample()); err != nil {
		t.Fatalf("writing as %s: %v", role, err)
	}
	conn, err := pgx.Connect(context.Background(), u.String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var n int
	if err := conn.QueryRow(context.Background(), `SELECT count(*) FROM `+tb.String()).Scan(&n); err == nil {
		t.Errorf("the gateway's role can read the audit table (%d rows)", n)
	}
}

// On MySQL (MariaDB): the table install-audit creates, twice, takes a
// batch in one INSERT, with UTC times and NULLs for empty fields; a table
// that is not there is refused, not retried.
func TestMySQLWriter(t *testing.T) {
	dsn := testenv.NewMySQLDatabase(t)
	tb, err := ParseTable(dsn, "")
	if err != nil || tb.String() != "`caddy_betterauth_audit_events`" {
		t.Fatalf("%v %v", tb, err)
	}
	if _, err := ParseTable(dsn, "ops.audit"); err == nil {
		t.Error("a schema accepted on MySQL")
	}
	db := testenv.OpenMySQL(t, dsn)
	for range 2 {
		if _, err := db.Exec(tb.DDL()); err != nil {
			t.Fatalf("%v\n%s", err, tb.DDL())
		}
	}
	w, err := OpenWriter(dsn, tb)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	events := sample()
	if err := w.Write(context.Background(), events); err != nil {
		t.Fatal(err)
	}
	var n int
	var ip, key, at string
	if err := db.QueryRow("SELECT count(*) OVER (), client_ip, key_id, occurred_at FROM "+tb.String()+" ORDER BY id LIMIT 1").Scan(&n, &ip, &key, &at); err != nil ||
		n != 2 || ip != "203.0.113.7" || key != "k1" || at != events[0].Time.UTC().Format("2006-01-02 15:04:05.000") {
		t.Fatalf("read back: %v %d %q %q %q (want %v, UTC)", err, n, ip, key, at, events[0].Time)
	}
	var nulls int
	if err := db.QueryRow("SELECT count(*) FROM " + tb.String() + " WHERE method IS NULL AND user_id IS NULL AND client_ip IS NULL").Scan(&nulls); err != nil || nulls != 1 {
		t.Fatalf("empty fields are not NULL: %d %v", nulls, err)
	}
	missing, _ := ParseTable(dsn, "nowhere")
	w2, _ := OpenWriter(dsn, missing)
	defer w2.Close()
	if err := w2.Write(context.Background(), sample()); err == nil || !refused(err) {
		t.Fatalf("missing table: %v", err)
	}
}
