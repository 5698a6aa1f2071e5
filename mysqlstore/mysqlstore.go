// Package mysqlstore reads Better-Auth's tables in MySQL or MariaDB, through
// github.com/go-sql-driver/mysql.
//
// The database URL is mysql://user:pass@host:3306/db (mariadb:// too), with
// the driver's parameters in its query (tls=true, timeout=5s...) and
// max_conns, the bound on open connections (default max(4, GOMAXPROCS)).
// Each connection is set up for reading Better-Auth's rows as its own code
// writes them: ANSI_QUOTES added to the session's sql_mode (the shared
// queries quote identifiers with double quotes), time_zone UTC and dates
// read as UTC (Better-Auth's migrations make datetime(3) columns, which
// mysql2 fills with UTC wall time when the app runs with TZ=UTC or
// timezone: "Z"), and SET SESSION TRANSACTION READ ONLY: the lookups never
// write. Give the gateway a user with SELECT on the Better-Auth tables and
// nothing else; with usage counting on the rows (Usage, on a pool of its
// own from OpenWritable), UPDATE on the apikey table too.
//
// The layout is detected on first use from information_schema.columns of
// the connection's database (package schema), as for the other stores.
package mysqlstore

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"net/url"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
	"go.uber.org/zap"

	"github.com/caddy-betterauth/caddy-betterauth/schema"
	"github.com/caddy-betterauth/caddy-betterauth/sqlitestore"
)

// IsDSN reports whether a database setting names a MySQL database.
func IsDSN(dsn string) bool {
	return strings.HasPrefix(dsn, "mysql://") || strings.HasPrefix(dsn, "mariadb://")
}

// DefaultMaxConns is the bound on open connections when the URL sets no
// max_conns: max(4, GOMAXPROCS).
func DefaultMaxConns() int { return max(4, runtime.GOMAXPROCS(0)) }

// Config parses a mysql:// URL into the driver's configuration, with the
// session settings the store reads under, and the connection bound.
func Config(dsn string) (*mysql.Config, int, error) {
	u, err := url.Parse(dsn)
	if err != nil || !IsDSN(dsn) {
		// url's message would quote the URL, password included.
		return nil, 0, errors.New("not a mysql:// URL")
	}
	cfg := mysql.NewConfig()
	cfg.Net, cfg.Addr = "tcp", u.Host
	if u.Port() == "" {
		cfg.Addr = u.Host + ":3306"
	}
	if u.User != nil {
		cfg.User = u.User.Username()
		cfg.Passwd, _ = u.User.Password()
	}
	cfg.DBName = strings.TrimPrefix(u.Path, "/")
	if cfg.DBName == "" {
		return nil, 0, errors.New("the mysql:// URL names no database (mysql://user:pass@host:3306/db)")
	}
	conns := DefaultMaxConns()
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return nil, 0, errors.New("the mysql:// URL's query is malformed")
	}
	if v := q.Get("max_conns"); v != "" {
		if conns, err = strconv.Atoi(v); err != nil || conns < 1 {
			return nil, 0, fmt.Errorf("max_conns must be a positive number, not %q", v)
		}
		q.Del("max_conns")
	}
	for k := range q {
		if v := sessionVar(k); storeVars[v] {
			// The driver sets each parameter in one SET in map order: the
			// operator's spelling of a variable the store sets would win
			// on some connections and not others.
			return nil, 0, fmt.Errorf("the mysql:// URL sets %s, which the store sets itself", v)
		}
	}
	// The driver's own parameters, as in its DSN (tls, timeout...).
	if len(q) > 0 {
		// With the address: tls=true verifies the certificate against its
		// host (the driver takes 127.0.0.1 for a DSN without one).
		parsed, err := parseDSN("tcp(" + cfg.Addr + ")/?" + q.Encode())
		if err != nil {
			return nil, 0, fmt.Errorf("the mysql:// URL's parameters: %w", err)
		}
		cfg.TLSConfig, cfg.TLS = parsed.TLSConfig, parsed.TLS
		cfg.Timeout, cfg.ReadTimeout, cfg.WriteTimeout = parsed.Timeout, parsed.ReadTimeout, parsed.WriteTimeout
		cfg.AllowCleartextPasswords, cfg.AllowNativePasswords = parsed.AllowCleartextPasswords, parsed.AllowNativePasswords
		cfg.Params = parsed.Params
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 5 * time.Second
	}
	cfg.ParseTime, cfg.Loc = true, time.UTC
	if cfg.Params == nil {
		cfg.Params = map[string]string{}
	}
	cfg.Params["sql_mode"] = "CONCAT(@@sql_mode, ',ANSI_QUOTES')"
	cfg.Params["time_zone"] = "'+00:00'"
	// Without autocommit (a server's global default may turn it off) a
	// session's reads stay in one transaction, on one snapshot: a revoked
	// key or session would stay valid on that connection for its life.
	cfg.Params["autocommit"] = "1"
	return cfg, conns, nil
}

// parseDSN is mysql.ParseDSN, with its panic (strict=true, a parameter
// the driver removed) an error: a setting must not crash Caddy.
func parseDSN(dsn string) (cfg *mysql.Config, err error) {
	defer func() {
		if r := recover(); r != nil {
			cfg, err = nil, fmt.Errorf("%v", r)
		}
	}()
	return mysql.ParseDSN(dsn)
}

// storeVars are the session variables Config and OpenWritable set.
var storeVars = map[string]bool{"sql_mode": true, "time_zone": true, "innodb_lock_wait_timeout": true, "autocommit": true}

// sessionVar is the variable a SET of parameter k assigns, in lower case
// without quotes, "@@" or scope.
func sessionVar(k string) string {
	v := strings.ToLower(strings.NewReplacer("`", "", " ", "", "\t", "").Replace(k))
	v = strings.TrimPrefix(v, "@@")
	for _, scope := range []string{"session.", "local.", "global."} {
		v = strings.TrimPrefix(v, scope)
	}
	return v
}

// Open returns a pool for the database dsn names, read-only on every
// connection. It does no I/O.
func Open(dsn string) (*sql.DB, error) {
	cfg, conns, err := Config(dsn)
	if err != nil {
		return nil, err
	}
	c, err := connector(cfg, "SET SESSION TRANSACTION READ ONLY")
	if err != nil {
		return nil, err
	}
	return pool(c, conns), nil
}

// OpenWritable returns a pool for the database dsn names whose sessions
// may write, for counting API-key uses on their rows (Usage) and nothing
// else; lockWait bounds a wait for a row's lock (innodb_lock_wait_timeout,
// in whole seconds, at least one): a use the gateway gave up on must not
// keep a server thread queued for long. It does no I/O.
func OpenWritable(dsn string, lockWait time.Duration) (*sql.DB, error) {
	cfg, conns, err := Config(dsn)
	if err != nil {
		return nil, err
	}
	cfg.Params["innodb_lock_wait_timeout"] = strconv.Itoa(max(1, int((lockWait+time.Second-1)/time.Second)))
	c, err := connector(cfg)
	if err != nil {
		return nil, err
	}
	return pool(c, conns), nil
}

// connector sets the store's session variables (those of storeVars in
// cfg.Params) in a SET of their own after the driver's SET of the URL's
// other parameters, whose values are SQL the store does not parse (a
// comment there would swallow what follows), then the statements given.
func connector(cfg *mysql.Config, then ...string) (driver.Connector, error) {
	var set []string
	for k := range storeVars {
		if v, ok := cfg.Params[k]; ok {
			set = append(set, k+" = "+v)
			delete(cfg.Params, k)
		}
	}
	slices.Sort(set)
	c, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, err
	}
	return session{c, append([]string{"SET SESSION " + strings.Join(set, ", ")}, then...)}, nil
}

func pool(c driver.Connector, conns int) *sql.DB {
	db := sql.OpenDB(c)
	db.SetMaxOpenConns(conns)
	db.SetMaxIdleConns(conns)
	// Below the servers' default wait_timeout (8 h) and the idle cut of
	// proxies in front of them.
	db.SetConnMaxIdleTime(5 * time.Minute)
	return db
}

// session runs its statements on every new connection: the store's
// settings, and for the lookups SET SESSION TRANSACTION READ ONLY (the
// store only reads, and a mistake, or an injected statement, must not
// write).
type session struct {
	driver.Connector
	stmts []string
}

func (s session) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := s.Connector.Connect(ctx)
	if err != nil {
		return nil, err
	}
	ex, ok := conn.(driver.ExecerContext)
	if !ok {
		conn.Close()
		return nil, errors.New("mysqlstore: the driver cannot run statements")
	}
	for _, q := range s.stmts {
		if _, err := ex.ExecContext(ctx, q, nil); err != nil {
			conn.Close()
			return nil, fmt.Errorf("mysqlstore: setting up the session: %w", err)
		}
	}
	return conn, nil
}

// Dialect is MySQL's SQL for package schema: identifiers in double quotes
// (the sessions run with ANSI_QUOTES), "?" parameters, JSON arrays through
// JSON_TABLE (MySQL 8, MariaDB 10.6), and a bearer value that may be a key
// or a session token read in one UNION ALL statement: one round trip.
var Dialect = schema.Dialect{Qualify: schema.QuoteIdent, Param: binaryParam, Param2: binaryParam, JSONArray: JSONArray, Union: true,
	Positional: true, ListParam: listParam, Text: "CHAR"}

// listParam is the strings of a JSON array parameter, as JSONArray's
// (the store always passes an array).
func listParam(p string) string {
	return fmt.Sprintf("(SELECT j.value FROM JSON_TABLE(%s, '$[*]' COLUMNS (value LONGBLOB PATH '$')) AS j)", p)
}

// binaryParam compares byte for byte: Better-Auth's tables take the
// server's default collation, case-insensitive (utf8mb4_general_ci on
// MariaDB, utf8mb4_0900_ai_ci on MySQL 8), under which a token would match
// its other spellings. The column's index still serves (MariaDB 10.11:
// ref access, then the exact comparison).
const binaryParam = "CAST(? AS BINARY)"

// JSONArray is MySQL's schema.Dialect.JSONArray. The strings are
// LONGBLOB: compared byte for byte with the case-insensitive columns (as
// binaryParam), no mix of collations for MySQL 8 to refuse, and none cut
// short (TEXT would stop at 64 KiB).
func JSONArray(expr string) string {
	return fmt.Sprintf("JSON_TABLE(CASE WHEN JSON_VALID(%[1]s) AND JSON_TYPE(%[1]s) = 'ARRAY' THEN %[1]s ELSE '[]' END, '$[*]' COLUMNS (value LONGBLOB PATH '$')) AS j", expr)
}

// Catalog reads the columns of the candidate tables in the connection's
// database, in their order.
func Catalog(ctx context.Context, db *sql.DB, tables []string) (schema.Catalog, error) {
	if len(tables) == 0 {
		return schema.Catalog{}, nil
	}
	args := make([]any, len(tables))
	for i, t := range tables {
		args[i] = t
	}
	marks := strings.TrimSuffix(strings.Repeat("?, ", len(tables)), ", ")
	rows, err := db.QueryContext(ctx, `SELECT table_name, column_name FROM information_schema.columns
WHERE table_schema = DATABASE() AND table_name IN (`+marks+`)
ORDER BY table_name, ordinal_position`, args...)
	if err != nil {
		return nil, fmt.Errorf("reading the catalog: %w", err)
	}
	defer rows.Close()
	cat := schema.Catalog{}
	for rows.Next() {
		var table, col string
		if err := rows.Scan(&table, &col); err != nil {
			return nil, fmt.Errorf("reading the catalog: %w", err)
		}
		table = candidate(table, tables)
		cat[table] = append(cat[table], col)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading the catalog: %w", err)
	}
	return cat, nil
}

// candidate is the candidate table name the catalog's table names: with
// lower_case_table_names 1 (Windows, macOS, Azure's default) the server
// stores and lists "oauthAccessToken" as oauthaccesstoken, while the
// queries' "oauthAccessToken" still finds it.
func candidate(table string, tables []string) string {
	if slices.Contains(tables, table) {
		return table
	}
	for _, t := range tables {
		if strings.EqualFold(t, table) {
			return t
		}
	}
	return table
}

// Options configure a Store.
type Options struct {
	Schema    schema.Config
	PlainKeys bool
	Logger    *zap.Logger
}

// New returns a Store reading Better-Auth's tables through db (from
// Open). It does no I/O. The lookups are those of the SQLite store, on
// MySQL's dialect and catalog.
func New(db *sql.DB, opts Options) (*sqlitestore.Store, error) {
	d := Dialect
	logger := opts.Logger
	if logger == nil {
		logger = zap.NewNop()
	}
	return sqlitestore.New(db, sqlitestore.Options{Schema: opts.Schema, PlainKeys: opts.PlainKeys, Logger: logger.Named("mysql"),
		Name: "mysqlstore", Dialect: &d, Catalog: Catalog})
}
