// Package store opens the Better-Auth database a DSN names: PostgreSQL
// (postgres://, postgresql:// or a key=value DSN) through pgstore, or a
// SQLite file (sqlite:, file:) through sqlitestore.
package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/zap"

	"github.com/caddy-betterauth/caddy-betterauth/betterauth"
	"github.com/caddy-betterauth/caddy-betterauth/mysqlstore"
	"github.com/caddy-betterauth/caddy-betterauth/oauth"
	"github.com/caddy-betterauth/caddy-betterauth/pgstore"
	"github.com/caddy-betterauth/caddy-betterauth/schema"
	"github.com/caddy-betterauth/caddy-betterauth/sqlitestore"
	"github.com/caddy-betterauth/caddy-betterauth/usage"
)

// Options configure the store.
type Options struct {
	Schema schema.Config
	// PGSchema is the PostgreSQL schema holding the tables.
	PGSchema  string
	PlainKeys bool
	// Writable opens a SQLite file read-write, or a second MySQL pool
	// whose sessions may write (the lookups' stay read-only), to count
	// API-key uses on their rows. PostgreSQL connections are as the DSN
	// makes them.
	Writable bool
	// UsageTimeout bounds a use (usage.NewDatabase's timeout): on MySQL,
	// a wait for a row's lock ends then too (default 3s).
	UsageTimeout time.Duration
	Logger       *zap.Logger
}

// Dialect is the kind of database a store reads.
type Dialect int

// Dialects.
const (
	Postgres Dialect = iota + 1
	SQLite
	MySQL
)

// String returns "postgres" or "sqlite", for messages.
func (d Dialect) String() string {
	switch d {
	case Postgres:
		return "postgres"
	case SQLite:
		return "sqlite"
	case MySQL:
		return "mysql"
	}
	return fmt.Sprintf("Dialect(%d)", int(d))
}

// DB is an open Better-Auth database.
type DB interface {
	betterauth.Store
	// ClaimUsage counts one use of an API key on its row (see
	// usage.Claimer); only with usage counting on.
	usage.Claimer
	// Catalog lists the columns of the candidate Better-Auth tables.
	Catalog(ctx context.Context) (schema.Catalog, error)
	// Layout is the detected layout (read on first use).
	Layout(ctx context.Context) (*schema.Layout, error)
	// User reads one user by id (nil when there is none).
	User(ctx context.Context, id string) (*betterauth.User, error)
	// Owner reads the user and the organization whose id is id (either
	// or both nil), and Member a user's role in an organization: for
	// records kept in secondary storage.
	Owner(ctx context.Context, id string) (*betterauth.User, *betterauth.Organization, error)
	Member(ctx context.Context, orgID, userID string) (role string, found bool, err error)
	// OAuthResource reports whether the OAuth provider has an
	// oauthResource row for identifier.
	OAuthResource(ctx context.Context, identifier string) (bool, error)
	// OAuthGrant reads the rows a verified JWT access token names.
	OAuthGrant(ctx context.Context, g schema.Grant) (*betterauth.OAuthToken, error)
	// JWK reads the signing key kid from Better-Auth's jwks table.
	JWK(ctx context.Context, kid string) (oauth.Key, error)
	// JWKs reads every usable key of the jwks table.
	JWKs(ctx context.Context) ([]oauth.Key, error)
	// Dialect says which database it is.
	Dialect() Dialect
	// Identity names the database without credentials
	// (postgres://host:port/db, sqlite:/path), to tell databases apart.
	Identity() string
	// Scope names, without credentials, everything that selects the rows
	// the store reads: for PostgreSQL the server, user, database, session
	// settings (search_path, options) and the schema they resolve to; for
	// SQLite the file; and the detected layout (tables and columns). It
	// reads the database on first use. Gateways share cached records only
	// when their scopes are equal.
	Scope(ctx context.Context) (string, error)
	Close() error
}

// Open returns the store for dsn. It does no I/O: connections are made on
// first use.
func Open(dsn string, opts Options) (DB, error) {
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	if sqlitestore.IsDSN(dsn) {
		if opts.PGSchema != "" {
			return nil, fmt.Errorf("pg_schema applies to PostgreSQL only")
		}
		open := sqlitestore.Open
		if opts.Writable {
			open = sqlitestore.OpenWritable
		}
		db, err := open(dsn)
		if err != nil {
			return nil, fmt.Errorf("database: %w", err)
		}
		s, err := sqlitestore.New(db, sqlitestore.Options{Schema: opts.Schema, PlainKeys: opts.PlainKeys, Logger: opts.Logger.Named("sqlite")})
		if err != nil {
			db.Close()
			return nil, err
		}
		path, _ := sqlitestore.Path(dsn)
		if abs, err := filepath.Abs(path); err == nil {
			path = abs
		}
		return &sqliteDB{Store: s, db: db, identity: "sqlite:" + path}, nil
	}
	if mysqlstore.IsDSN(dsn) {
		return openMySQL(dsn, opts)
	}
	pcfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// pgx's message can quote the URL, password included.
		return nil, fmt.Errorf("database: not a PostgreSQL URL or DSN, a mysql:// URL, nor a sqlite: or file: URL")
	}
	if _, ok := pcfg.ConnConfig.RuntimeParams["application_name"]; !ok {
		pcfg.ConnConfig.RuntimeParams["application_name"] = "caddy-better-auth"
	}
	// NewWithConfig does not connect: the first lookup does.
	pool, err := pgxpool.NewWithConfig(context.Background(), pcfg)
	if err != nil {
		return nil, fmt.Errorf("database: %w", err)
	}
	s, err := pgstore.New(pool, pgstore.Options{Schema: opts.Schema, PGSchema: opts.PGSchema, PlainKeys: opts.PlainKeys, Logger: opts.Logger.Named("postgres")})
	if err != nil {
		pool.Close()
		return nil, err
	}
	c := pcfg.ConnConfig
	return &pgDB{Store: s, pool: pool, pgSchema: opts.PGSchema,
		identity: fmt.Sprintf("postgres://%s:%d/%s?schema=%s", c.Host, c.Port, c.Database, opts.PGSchema),
		scope:    pgScope(c.User, c.Host, c.Port, c.Database, c.RuntimeParams, opts.PGSchema)}, nil
}

// pgScope is the part of a scope the DSN says: who connects where, and the
// session settings that change which schema unqualified names resolve to.
func pgScope(user, host string, port uint16, database string, params map[string]string, pgSchema string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "postgres://%s@%s:%d/%s", url.PathEscape(user), host, port, url.PathEscape(database))
	names := make([]string, 0, len(params))
	for k := range params {
		if k != "application_name" {
			names = append(names, k)
		}
	}
	slices.Sort(names)
	for _, k := range names {
		fmt.Fprintf(&b, "\n%s=%q", k, params[k])
	}
	fmt.Fprintf(&b, "\npg_schema=%q", pgSchema)
	return b.String()
}

type pgDB struct {
	*pgstore.Store
	pool     *pgxpool.Pool
	pgSchema string
	identity string
	scope    string
}

func (*pgDB) Dialect() Dialect   { return Postgres }
func (d *pgDB) Identity() string { return d.identity }
func (d *pgDB) Close() error     { d.pool.Close(); return nil }

// Scope implements DB: the DSN's part, the schema a search_path set on
// the role or database resolves to, and the layout.
func (d *pgDB) Scope(ctx context.Context) (string, error) {
	layout, err := d.Layout(ctx)
	if err != nil {
		return "", err
	}
	var resolved, dbOID string
	if err := d.pool.QueryRow(ctx, `SELECT COALESCE(NULLIF($1, ''), current_schema())::text,
	(SELECT oid::text FROM pg_database WHERE datname = current_database())`, d.pgSchema).Scan(&resolved, &dbOID); err != nil {
		return "", fmt.Errorf("reading the current schema: %w", err)
	}
	scope := d.scope + "\nschema=" + strconv.Quote(resolved) + "\ndatabase_oid=" + dbOID
	// The cluster's own identity tells apart servers that the same DSN
	// reaches from different places (one template, many tenants); roles
	// without pg_monitor may not read it.
	var system string
	if d.pool.QueryRow(ctx, "SELECT system_identifier::text FROM pg_control_system()").Scan(&system) == nil {
		scope += "\nsystem_identifier=" + system
	}
	return withLayout(scope, layout)
}

// withLayout adds the layout (table and column names) to a scope.
func withLayout(scope string, l *schema.Layout) (string, error) {
	b, err := json.Marshal(l)
	if err != nil {
		return "", err
	}
	return scope + "\nlayout=" + string(b), nil
}

type sqliteDB struct {
	*sqlitestore.Store
	db       *sql.DB
	identity string
}

func (*sqliteDB) Dialect() Dialect   { return SQLite }
func (d *sqliteDB) Identity() string { return d.identity }

// Scope implements DB: the file and the layout.
func (d *sqliteDB) Scope(ctx context.Context) (string, error) {
	layout, err := d.Layout(ctx)
	if err != nil {
		return "", err
	}
	return withLayout(d.identity, layout)
}
func (d *sqliteDB) Close() error { return d.db.Close() }

func openMySQL(dsn string, opts Options) (DB, error) {
	if opts.PGSchema != "" {
		return nil, fmt.Errorf("pg_schema applies to PostgreSQL only")
	}
	cfg, _, err := mysqlstore.Config(dsn)
	if err != nil {
		return nil, fmt.Errorf("database: %w", err)
	}
	db, err := mysqlstore.Open(dsn)
	if err != nil {
		return nil, fmt.Errorf("database: %w", err)
	}
	s, err := mysqlstore.New(db, mysqlstore.Options{Schema: opts.Schema, PlainKeys: opts.PlainKeys, Logger: opts.Logger})
	if err != nil {
		db.Close()
		return nil, err
	}
	d := &mysqlDB{sqliteDB: sqliteDB{Store: s, db: db, identity: "mysql://" + cfg.Addr + "/" + url.PathEscape(cfg.DBName)},
		user: cfg.User}
	if opts.Writable {
		// A pool of its own: the lookups' sessions stay read-only.
		wait := opts.UsageTimeout
		if wait <= 0 {
			wait = 3 * time.Second
		}
		if d.writes, err = mysqlstore.OpenWritable(dsn, wait); err != nil {
			db.Close()
			return nil, fmt.Errorf("database: %w", err)
		}
		d.usage = mysqlstore.NewUsage(d.writes, s.Layout)
	}
	return d, nil
}

// mysqlDB reads MySQL through the SQLite store's lookups (see mysqlstore).
type mysqlDB struct {
	sqliteDB
	user   string
	writes *sql.DB // with usage database only
	usage  *mysqlstore.Usage
}

func (d *mysqlDB) Close() error {
	if d.writes != nil {
		d.writes.Close()
	}
	return d.db.Close()
}

func (*mysqlDB) Dialect() Dialect { return MySQL }

// Scope implements DB: who connects to which server and database, the
// server's own identity (its server_uuid on MySQL, server_id on MariaDB,
// which has no uuid), and the layout.
func (d *mysqlDB) Scope(ctx context.Context) (string, error) {
	layout, err := d.Layout(ctx)
	if err != nil {
		return "", err
	}
	var server string
	if err := d.db.QueryRowContext(ctx, "SELECT CONCAT(@@hostname, ':', @@port, '/', @@server_id)").Scan(&server); err != nil {
		return "", fmt.Errorf("reading the server's identity: %w", err)
	}
	return withLayout(d.identity+"\nuser="+strconv.Quote(d.user)+"\nserver="+strconv.Quote(server), layout)
}

// ClaimUsage implements usage.Claimer on the writable pool (Options.Writable).
func (d *mysqlDB) ClaimUsage(ctx context.Context, id string, rules usage.Rules, clock func() time.Time) (usage.Row, time.Time, bool, error) {
	if d.usage == nil {
		return usage.Row{}, time.Time{}, false, fmt.Errorf("mysql: counting uses needs the store opened writable")
	}
	return d.usage.ClaimUsage(ctx, id, rules, clock)
}
