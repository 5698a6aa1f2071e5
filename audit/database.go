package audit

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/caddy-betterauth/caddy-betterauth/mysqlstore"
	"github.com/caddy-betterauth/caddy-betterauth/schema"
	"github.com/caddy-betterauth/caddy-betterauth/sqlitestore"
)

// Default tables: on PostgreSQL in the gateway's own schema, beside
// usage_writes, apart from the app's tables and its migrations; SQLite has
// no schemas, and MySQL's are databases: there, beside the app's tables.
const (
	DefaultPostgresTable = "caddy_betterauth.audit_events"
	DefaultSQLiteTable   = "caddy_betterauth_audit_events"
)

// Columns are the audit table's columns, in the order writers fill them.
var Columns = []string{"occurred_at", "front_end", "method", "decision", "code", "status",
	"user_id", "org_id", "key_id", "session_id", "token_id", "client_id", "credential_fingerprint",
	"client_ip", "host", "path", "mcp_method", "mcp_name"}

// Table is an audit table's name, checked: on PostgreSQL [schema.]table,
// on SQLite a plain name, each part an SQL identifier of letters, digits
// and underscores.
type Table struct {
	Schema, Name string
	sqlite       bool
	mysql        bool
}

var identifier = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,62}$`)

// ParseTable checks name (DefaultPostgresTable or DefaultSQLiteTable when
// "") for the database dsn.
func ParseTable(dsn, name string) (Table, error) {
	t := Table{sqlite: sqlitestore.IsDSN(dsn), mysql: mysqlstore.IsDSN(dsn)}
	if name == "" {
		name = DefaultPostgresTable
		if t.sqlite || t.mysql {
			name = DefaultSQLiteTable
		}
	}
	parts := strings.Split(name, ".")
	for _, p := range parts {
		if !identifier.MatchString(p) {
			return t, fmt.Errorf("audit: table %q: names are letters, digits and underscores, not starting with a digit", name)
		}
	}
	switch {
	case len(parts) == 1:
		t.Name = parts[0]
	case len(parts) == 2 && !t.sqlite && !t.mysql:
		t.Schema, t.Name = parts[0], parts[1]
	default:
		return t, fmt.Errorf("audit: table %q: expected [schema.]table on PostgreSQL, table on SQLite and MySQL", name)
	}
	return t, nil
}

// String returns the name, quoted for SQL.
func (t Table) String() string {
	if t.mysql {
		// Backticks: what a mysql client takes whatever its sql_mode, for
		// the SQL install-audit --print shows.
		return "`" + t.Name + "`"
	}
	if t.Schema == "" {
		return schema.QuoteIdent(t.Name)
	}
	return schema.QuoteIdent(t.Schema) + "." + schema.QuoteIdent(t.Name)
}

// DDL returns the statements that create the table and its indexes (for
// the events of a user, of a key, and of a period), idempotently.
func (t Table) DDL() string {
	if t.mysql {
		return t.mysqlDDL()
	}
	var b strings.Builder
	idx := func(suffix, cols, where string) {
		fmt.Fprintf(&b, "CREATE INDEX IF NOT EXISTS %s ON %s (%s)%s;\n",
			t.indexName(suffix), t, cols, where)
	}
	if t.sqlite {
		fmt.Fprintf(&b, `CREATE TABLE IF NOT EXISTS %s (
	id INTEGER PRIMARY KEY,
	occurred_at TEXT NOT NULL, -- UTC, RFC 3339 with milliseconds: sorts as time
`, t)
	} else {
		if t.Schema != "" {
			fmt.Fprintf(&b, "CREATE SCHEMA IF NOT EXISTS %s;\n", schema.QuoteIdent(t.Schema))
		}
		fmt.Fprintf(&b, `CREATE TABLE IF NOT EXISTS %s (
	id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	occurred_at timestamptz NOT NULL,
`, t)
	}
	ip := "inet"
	if t.sqlite {
		ip = "text"
	}
	fmt.Fprintf(&b, `	front_end text NOT NULL,
	method text,
	decision text NOT NULL, -- allow, deny or error
	code text NOT NULL,
	status integer NOT NULL,
	user_id text,
	org_id text,
	key_id text,
	session_id text,
	token_id text,
	client_id text,
	credential_fingerprint text,
	client_ip %s,
	host text,
	path text,
	mcp_method text,
	mcp_name text
);
`, ip)
	idx("occurred_at_idx", "occurred_at", "")
	idx("user_idx", "user_id, occurred_at", " WHERE user_id IS NOT NULL")
	idx("key_idx", "key_id, occurred_at", " WHERE key_id IS NOT NULL")
	return b.String()
}

// mysqlDDL is DDL for MySQL: indexes inside CREATE TABLE (MySQL has no
// CREATE INDEX IF NOT EXISTS, nor partial indexes), indexed columns as
// varchar (text takes no index without a prefix length), MaxField
// characters at most.
func (t Table) mysqlDDL() string {
	return fmt.Sprintf("CREATE TABLE IF NOT EXISTS %[1]s (\n"+
		"\tid bigint NOT NULL AUTO_INCREMENT PRIMARY KEY,\n"+
		"\toccurred_at datetime(3) NOT NULL, -- UTC\n"+
		"\tfront_end varchar(16) NOT NULL,\n"+
		"\tmethod varchar(16),\n"+
		"\tdecision varchar(8) NOT NULL, -- allow, deny or error\n"+
		"\tcode varchar(64) NOT NULL,\n"+
		"\tstatus int NOT NULL,\n"+
		"\tuser_id varchar(%[2]d),\n"+
		"\torg_id varchar(%[2]d),\n"+
		"\tkey_id varchar(%[2]d),\n"+
		"\tsession_id varchar(%[2]d),\n"+
		"\ttoken_id varchar(%[2]d),\n"+
		"\tclient_id varchar(%[2]d),\n"+
		"\tcredential_fingerprint varchar(16),\n"+
		"\tclient_ip varchar(45),\n"+
		"\thost text,\n"+
		"\tpath text,\n"+
		"\tmcp_method text,\n"+
		"\tmcp_name text,\n"+
		"\tKEY %[3]s (occurred_at),\n"+
		"\tKEY %[4]s (user_id, occurred_at),\n"+
		"\tKEY %[5]s (key_id, occurred_at)\n"+
		") DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;\n",
		t, MaxField, "`"+t.indexBase("occurred_at_idx")+"`", "`"+t.indexBase("user_idx")+"`", "`"+t.indexBase("key_idx")+"`")
}

// Grant returns the statements that let role (the gateway's database
// user, when another role created the table) write events: USAGE on the
// table's schema and INSERT on the table, nothing else (it reads none of
// it). PostgreSQL only.
func (t Table) Grant(role string) string {
	var b strings.Builder
	if t.Schema != "" {
		fmt.Fprintf(&b, "GRANT USAGE ON SCHEMA %s TO %s;\n", schema.QuoteIdent(t.Schema), schema.QuoteIdent(role))
	}
	fmt.Fprintf(&b, "GRANT INSERT ON %s TO %s;\n", t, schema.QuoteIdent(role))
	return b.String()
}

// indexName names the table's index for CREATE INDEX (PostgreSQL creates
// it in the table's schema and takes no schema there; SQLite takes none at
// all): the table's name and suffix, within PostgreSQL's 63 bytes by
// cutting the table's name, not the suffix, which would give a long
// table's three indexes one name (and IF NOT EXISTS would skip two).
func (t Table) indexName(suffix string) string { return schema.QuoteIdent(t.indexBase(suffix)) }

// indexBase is indexName unquoted (MySQL's limit is 64, PostgreSQL's 63).
func (t Table) indexBase(suffix string) string {
	name := t.Name
	if len(name)+1+len(suffix) > 63 {
		name = name[:63-1-len(suffix)]
	}
	return name + "_" + suffix
}

// OpenWriter returns a Writer into table t of the database dsn: a pool of
// its own on PostgreSQL (so that a slow audit write never holds a
// connection a lookup needs), a read-write handle on SQLite. It does no
// I/O: it connects on the first write.
func OpenWriter(dsn string, t Table) (Writer, error) {
	if t.mysql {
		// The store's session settings (ANSI_QUOTES aside, UTC), writable.
		db, err := mysqlstore.OpenWritable(dsn, 5*time.Second)
		if err != nil {
			return nil, fmt.Errorf("audit: %w", err)
		}
		db.SetMaxOpenConns(2)
		return &mysqlWriter{db: db, table: t}, nil
	}
	if t.sqlite {
		db, err := sqlitestore.OpenWritable(dsn)
		if err != nil {
			return nil, fmt.Errorf("audit: %w", err)
		}
		db.SetMaxOpenConns(1)
		return &sqliteWriter{db: db, insert: insertSQL(t)}, nil
	}
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// pgx's message can quote the URL, password included.
		return nil, errors.New("audit: the database is not a PostgreSQL URL or DSN, nor a sqlite: or file: URL")
	}
	cfg.MaxConns, cfg.MinConns = 2, 0
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	id := pgx.Identifier{t.Name}
	if t.Schema != "" {
		id = pgx.Identifier{t.Schema, t.Name}
	}
	return &pgWriter{pool: pool, table: id}, nil
}

type pgWriter struct {
	pool  *pgxpool.Pool
	table pgx.Identifier
}

// Write copies the batch in (COPY: one round trip, whatever its size).
func (w *pgWriter) Write(ctx context.Context, events []Event) error {
	_, err := w.pool.CopyFrom(ctx, w.table, Columns, pgx.CopyFromSlice(len(events), func(i int) ([]any, error) {
		e := &events[i]
		var ip any
		if e.ClientIP.IsValid() {
			ip = e.ClientIP
		}
		return []any{e.Time, e.FrontEnd, null(e.Method), e.Decision, e.Code, int32(e.Status),
			null(e.UserID), null(e.OrgID), null(e.KeyID), null(e.SessionID), null(e.TokenID), null(e.ClientID),
			null(e.Fingerprint), ip, null(e.Host), null(e.Path), null(e.MCPMethod), null(e.MCPName)}, nil
	}))
	var pe *pgconn.PgError
	if errors.As(err, &pe) && !transient(pe.Code) {
		return Refused(err)
	}
	return err
}

// transient reports whether a PostgreSQL error class is the server's state
// rather than the batch's: connection trouble (08), too little of
// something (53), the server shutting down or starting (57), a system
// error (58) or a conflict (40); or the error a server gives while it is
// read-only (25006: a failover's old primary) or the table is locked
// past lock_timeout (55P03: a migration holding it).
func transient(code string) bool {
	if len(code) < 2 {
		return true
	}
	switch code {
	case "25006", "55P03":
		return true
	}
	switch code[:2] {
	case "08", "40", "53", "57", "58":
		return true
	}
	return false
}

func (w *pgWriter) Close() error {
	w.pool.Close()
	return nil
}

type sqliteWriter struct {
	db     *sql.DB
	insert string
}

func insertSQL(t Table) string {
	marks := strings.TrimSuffix(strings.Repeat("?, ", len(Columns)), ", ")
	return fmt.Sprintf("INSERT INTO %s (%s) VALUES (%s)", t, strings.Join(Columns, ", "), marks)
}

// Write inserts the batch in one transaction.
func (w *sqliteWriter) Write(ctx context.Context, events []Event) error {
	tx, err := w.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	st, err := tx.PrepareContext(ctx, w.insert)
	if err != nil {
		if strings.Contains(err.Error(), "no such table") || strings.Contains(err.Error(), "has no column") {
			return Refused(err)
		}
		return err
	}
	defer st.Close()
	for i := range events {
		e := &events[i]
		var ip any
		if e.ClientIP.IsValid() {
			ip = e.ClientIP.String()
		}
		if _, err := st.ExecContext(ctx, e.Time.UTC().Format("2006-01-02T15:04:05.000Z"), e.FrontEnd, null(e.Method),
			e.Decision, e.Code, e.Status, null(e.UserID), null(e.OrgID), null(e.KeyID), null(e.SessionID),
			null(e.TokenID), null(e.ClientID), null(e.Fingerprint), ip, null(e.Host), null(e.Path),
			null(e.MCPMethod), null(e.MCPName)); err != nil {
			return err
		}
	}
	return tx.Commit()
}

func (w *sqliteWriter) Close() error { return w.db.Close() }

// null stores "" as NULL.
func null(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// mysqlWriter writes a batch as one multi-row INSERT: one statement, one
// round trip (500 events are 9,000 parameters, within MySQL's 65,535).
type mysqlWriter struct {
	db    *sql.DB
	table Table
}

func (w *mysqlWriter) Write(ctx context.Context, events []Event) error {
	row := "(" + strings.TrimSuffix(strings.Repeat("?, ", len(Columns)), ", ") + ")"
	var q strings.Builder
	fmt.Fprintf(&q, "INSERT INTO %s (%s) VALUES ", w.table, strings.Join(Columns, ", "))
	args := make([]any, 0, len(events)*len(Columns))
	for i := range events {
		if i > 0 {
			q.WriteString(", ")
		}
		q.WriteString(row)
		e := &events[i]
		var ip any
		if e.ClientIP.IsValid() {
			ip = e.ClientIP.String()
		}
		args = append(args, e.Time.UTC(), e.FrontEnd, null(e.Method), e.Decision, e.Code, e.Status,
			null(e.UserID), null(e.OrgID), null(e.KeyID), null(e.SessionID), null(e.TokenID), null(e.ClientID),
			null(e.Fingerprint), ip, null(e.Host), null(e.Path), null(e.MCPMethod), null(e.MCPName))
	}
	_, err := w.db.ExecContext(ctx, q.String(), args...)
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		switch me.Number {
		case 1146, 1054, 1142, 1406, 1366: // no table, no column, no INSERT grant, too long, bad value
			return Refused(err)
		}
	}
	return err
}

func (w *mysqlWriter) Close() error { return w.db.Close() }
