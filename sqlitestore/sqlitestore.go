// Package sqlitestore reads Better-Auth's tables in a SQLite file, with the
// pure-Go modernc.org/sqlite driver (no cgo).
//
// The file is opened read-only with a busy timeout, so the gateway can sit
// beside the Better-Auth app that writes it. The layout is detected on first
// use (package schema): Better-Auth's own migrations, which store dates as
// ISO-8601 text with milliseconds and booleans as 0/1, and Drizzle's, which
// store dates as epoch milliseconds. The store writes only to count API-key
// uses (ClaimUsage), on a file opened with OpenWritable.
//
// Connections are bounded: each one holds a file descriptor on the database
// (and one on its -wal file in WAL mode), and a flood of cache misses would
// otherwise open one per concurrent request. At most max(4, GOMAXPROCS) are
// open, all of which may stay idle; the URL's max_conns parameter
// (sqlite:///path/auth.db?max_conns=8) sets another bound. Lookups beyond it
// wait for a free connection, within the gateway's lookup_timeout.
//
// Its Store is the database/sql store: package mysqlstore runs the same
// lookups on MySQL, with its own dialect and catalog (Options.Dialect,
// Options.Catalog).
package sqlitestore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"sync"

	"go.uber.org/zap"
	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/caddy-betterauth/caddy-betterauth/betterauth"
	"github.com/caddy-betterauth/caddy-betterauth/schema"
)

// DefaultBusyTimeout is how long a read waits for the app's write lock, in
// milliseconds.
const DefaultBusyTimeout = 5000

// IsDSN reports whether a database setting names a SQLite file:
// sqlite:///absolute/path.db, sqlite:relative.db or file:path.db.
func IsDSN(dsn string) bool {
	return strings.HasPrefix(dsn, "sqlite:") || strings.HasPrefix(dsn, "file:")
}

// Path returns the file a SQLite DSN names.
func Path(dsn string) (string, error) {
	rest, ok := strings.CutPrefix(dsn, "sqlite:")
	if !ok {
		rest, ok = strings.CutPrefix(dsn, "file:")
	}
	if !ok {
		return "", errors.New("not a sqlite: or file: URL")
	}
	rest, _, _ = strings.Cut(rest, "?")
	if strings.HasPrefix(rest, "//") { // sqlite:///abs/path or sqlite://rel/path
		rest = strings.TrimPrefix(rest, "//")
		if strings.HasPrefix(rest, "localhost/") {
			rest = strings.TrimPrefix(rest, "localhost")
		}
	}
	p, err := url.PathUnescape(rest)
	if err != nil || p == "" {
		return "", errors.New("no file path in the SQLite URL")
	}
	return p, nil
}

// DefaultMaxConns is the bound on open connections when the URL sets no
// max_conns: max(4, GOMAXPROCS).
func DefaultMaxConns() int { return max(4, runtime.GOMAXPROCS(0)) }

// Open opens a SQLite file read-only for a Store, with at most
// DefaultMaxConns connections, or the URL's max_conns. It does no I/O: the
// file is opened on first use, and a missing file is an error then.
func Open(dsn string) (*sql.DB, error) { return open(dsn, false) }

// OpenWritable opens the file as Open does, but read-write: for counting
// API-key uses on their rows (ClaimUsage), and nothing else.
func OpenWritable(dsn string) (*sql.DB, error) { return open(dsn, true) }

func open(dsn string, writable bool) (*sql.DB, error) {
	path, err := Path(dsn)
	if err != nil {
		return nil, err
	}
	conns, err := maxConns(dsn)
	if err != nil {
		return nil, err
	}
	q := url.Values{}
	q.Set("mode", "ro")
	if writable {
		q.Set("mode", "rw")
	}
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", DefaultBusyTimeout))
	if !writable {
		q.Add("_pragma", "query_only(1)")
	}
	u := url.URL{Scheme: "file", Opaque: (&url.URL{Path: path}).EscapedPath(), RawQuery: q.Encode()}
	db, err := sql.Open("sqlite", u.String())
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(conns)
	db.SetMaxIdleConns(conns)
	return db, nil
}

// maxConns reads the max_conns parameter of a SQLite URL. Other parameters
// are ignored.
func maxConns(dsn string) (int, error) {
	_, query, ok := strings.Cut(dsn, "?")
	if !ok {
		return DefaultMaxConns(), nil
	}
	params, _ := url.ParseQuery(query)
	v, ok := params["max_conns"]
	if !ok {
		return DefaultMaxConns(), nil
	}
	n, err := strconv.Atoi(v[len(v)-1])
	if err != nil || n < 1 {
		return 0, fmt.Errorf("max_conns must be a positive number, not %q", v[len(v)-1])
	}
	return n, nil
}

// Options configure a Store.
type Options struct {
	// Schema is what the operator configured; the rest is detected.
	Schema schema.Config
	// PlainKeys matches the api-key plugin's disableKeyHashing.
	PlainKeys bool
	// Logger receives the detected layout and warnings. Default: none.
	Logger *zap.Logger

	// Name, Dialect and Catalog make the Store read another database
	// through database/sql (package mysqlstore): its name in errors, its
	// SQL, and how its catalog lists the candidate tables' columns.
	// Default: SQLite's.
	Name    string
	Dialect *schema.Dialect
	Catalog func(ctx context.Context, db *sql.DB, tables []string) (schema.Catalog, error)
}

// Store implements betterauth.Store on SQLite. It does not own db.
type Store struct {
	db     *sql.DB
	name   string // in errors: "sqlitestore", "mysqlstore"
	opts   Options
	logger *zap.Logger
	layout schema.Lazy
	stmts  sync.Map // query text → *sql.Stmt: the layout's few lookups, prepared once
	usage  struct {
		once sync.Once
		sql  *schema.UsageSQL
		err  error
	}
}

// New returns a Store reading through db. It does no I/O.
func New(db *sql.DB, opts Options) (*Store, error) {
	s := &Store{db: db, opts: opts, logger: opts.Logger, name: opts.Name}
	if s.name == "" {
		s.name = "sqlitestore"
	}
	if err := opts.Schema.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", s.name, err)
	}
	if s.logger == nil {
		s.logger = zap.NewNop()
	}
	dialect := schema.Dialect{Qualify: schema.QuoteIdent, Param: "?", Param2: "?", JSONArray: schema.SQLiteJSONArray}
	if opts.Dialect != nil {
		dialect = *opts.Dialect
	}
	s.layout = schema.Lazy{
		Name:    s.name,
		Config:  opts.Schema,
		Dialect: dialect,
		Catalog: s.Catalog,
		Resolved: func(l *schema.Layout) {
			s.logger.Info("better-auth schema detected", zap.String("layout", l.Describe()))
			if l.AllowedIPsField != "" && l.APIKey != nil && !l.APIKey.Has("metadata") {
				s.logger.Warn("api_key_allowed_ips_field is set, but the api-key table has no metadata column: no key is restricted",
					zap.String("table", l.APIKey.Name))
			}
		},
	}
	return s, nil
}

// Catalog reads the columns of the candidate Better-Auth tables.
func (s *Store) Catalog(ctx context.Context) (schema.Catalog, error) {
	if s.opts.Catalog != nil {
		return s.opts.Catalog(ctx, s.db, s.opts.Schema.Candidates())
	}
	cat := schema.Catalog{}
	for _, table := range s.opts.Schema.Candidates() {
		rows, err := s.db.QueryContext(ctx, `SELECT name FROM pragma_table_info(?) ORDER BY cid`, table)
		if err != nil {
			return nil, fmt.Errorf("reading the catalog: %w", err)
		}
		for rows.Next() {
			var col string
			if err := rows.Scan(&col); err != nil {
				rows.Close()
				return nil, fmt.Errorf("reading the catalog: %w", err)
			}
			cat[table] = append(cat[table], col)
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return nil, fmt.Errorf("reading the catalog: %w", err)
		}
	}
	return cat, nil
}

// query runs one of the layout's lookups as a statement prepared once per
// connection: a query with arguments is otherwise prepared, run and closed
// each time, which on MySQL costs two round trips instead of one.
func (s *Store) query(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	if st, ok := s.stmts.Load(q); ok {
		return st.(*sql.Stmt).QueryContext(ctx, args...)
	}
	st, err := s.db.PrepareContext(ctx, q)
	if err != nil {
		return nil, err
	}
	if prev, loaded := s.stmts.LoadOrStore(q, st); loaded {
		st.Close()
		st = prev.(*sql.Stmt)
	}
	return st.QueryContext(ctx, args...)
}

// Layout returns the detected layout, reading the catalog on first use.
func (s *Store) Layout(ctx context.Context) (*schema.Layout, error) { return s.layout.Layout(ctx) }

func (s *Store) prepare(ctx context.Context) (*schema.Prepared, error) { return s.layout.Get(ctx) }

// Lookup implements betterauth.Store.
func (s *Store) Lookup(ctx context.Context, l betterauth.Lookup) (betterauth.Record, error) {
	p, err := s.prepare(ctx)
	if err != nil {
		return betterauth.Record{}, err
	}
	var rec betterauth.Record
	both := l.Kind.Reads(betterauth.KindAPIKey) && l.Kind.Reads(betterauth.KindSession) && p.Queries.Either != ""
	if both {
		// Both in one statement: one round trip.
		if rec.APIKey, rec.Session, err = s.either(ctx, p.Queries.Either, l); err != nil {
			return betterauth.Record{}, err
		}
		if rec.APIKey != nil {
			rec.Session = nil // a key first, as below
		}
	} else if l.Kind.Reads(betterauth.KindAPIKey) && p.Queries.APIKey != "" {
		if rec.APIKey, err = s.key(ctx, p.Queries.APIKey, l.StoredKey(s.opts.PlainKeys)); err != nil {
			return betterauth.Record{}, err
		}
	}
	if !both && l.Kind.Reads(betterauth.KindSession) && rec.APIKey == nil && p.Queries.Session != "" {
		if rec.Session, err = s.session(ctx, p.Queries.Session, l.Secret); err != nil {
			return betterauth.Record{}, err
		}
	}
	if o := p.Layout.OAuth; o != nil && l.Kind.Reads(betterauth.KindOAuth) && rec.APIKey == nil && rec.Session == nil {
		if rec.OAuth, err = s.oauth(ctx, p.Queries.OAuth, l, o.Legacy); err != nil {
			return betterauth.Record{}, err
		}
	}
	return rec, nil
}

// oauth reads an OAuth access token: by its hash, as the OAuth provider
// stores it, or, in the legacy plugins' table, by itself.
func (s *Store) oauth(ctx context.Context, query string, l betterauth.Lookup, legacy bool) (*betterauth.OAuthToken, error) {
	arg := l.KeyHash()
	if legacy {
		arg = l.Secret
	}
	rows, err := s.query(ctx, query, arg)
	if err != nil {
		return nil, fmt.Errorf("%s: oauth token lookup: %w", s.name, err)
	}
	defer rows.Close()
	t, err := schema.DecodeOAuth(rows, legacy)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", s.name, err)
	}
	return t, nil
}

// OAuthGrant reads the rows a verified JWT access token names (see
// schema.Queries.OAuthGrant); nil without the OAuth provider's tables.
func (s *Store) OAuthGrant(ctx context.Context, g schema.Grant) (*betterauth.OAuthToken, error) {
	p, err := s.prepare(ctx)
	if err != nil || p.Queries.OAuthGrant == "" {
		return nil, err
	}
	args := g.Args(true)
	if s.layout.Dialect.Positional {
		args = g.PositionalArgs()
	}
	rows, err := s.query(ctx, p.Queries.OAuthGrant, args...)
	if err != nil {
		return nil, fmt.Errorf("%s: oauth grant lookup: %w", s.name, err)
	}
	defer rows.Close()
	t, err := schema.DecodeOAuthGrant(rows, g)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", s.name, err)
	}
	return t, nil
}

// OAuthResource reports whether the OAuth provider knows the resource
// identifier (an oauthResource row); false without the table.
func (s *Store) OAuthResource(ctx context.Context, identifier string) (bool, error) {
	p, err := s.prepare(ctx)
	if err != nil || p.Queries.OAuthResource == "" {
		return false, err
	}
	rows, err := s.query(ctx, p.Queries.OAuthResource, identifier)
	if err != nil {
		return false, fmt.Errorf("%s: oauth resource lookup: %w", s.name, err)
	}
	defer rows.Close()
	found := rows.Next()
	return found, rows.Err()
}

// User reads one user by id.
func (s *Store) User(ctx context.Context, id string) (*betterauth.User, error) {
	p, err := s.prepare(ctx)
	if err != nil {
		return nil, err
	}
	rows, err := s.query(ctx, p.Queries.User, id)
	if err != nil {
		return nil, fmt.Errorf("%s: user lookup: %w", s.name, err)
	}
	defer rows.Close()
	u, err := schema.DecodeUser(rows)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", s.name, err)
	}
	return u, nil
}

// Owner reads the user and the organization whose id is id, either or
// both nil when there is none: the owner of an API key kept in secondary
// storage, which only the key's configuration can name.
func (s *Store) Owner(ctx context.Context, id string) (*betterauth.User, *betterauth.Organization, error) {
	u, err := s.User(ctx, id)
	if err != nil {
		return nil, nil, err
	}
	p, err := s.prepare(ctx)
	if err != nil || p.Queries.Organization == "" {
		return u, nil, err
	}
	rows, err := s.query(ctx, p.Queries.Organization, id)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: organization lookup: %w", s.name, err)
	}
	defer rows.Close()
	o, err := schema.DecodeOrganization(rows)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", s.name, err)
	}
	return u, o, nil
}

// Member reads the role of user userID in organization orgID, and whether
// they are a member; not a member without the organization plugin.
func (s *Store) Member(ctx context.Context, orgID, userID string) (string, bool, error) {
	p, err := s.prepare(ctx)
	if err != nil || p.Queries.Member == "" {
		return "", false, err
	}
	rows, err := s.query(ctx, p.Queries.Member, orgID, userID)
	if err != nil {
		return "", false, fmt.Errorf("%s: member lookup: %w", s.name, err)
	}
	defer rows.Close()
	role, found, err := schema.DecodeMember(rows)
	if err != nil {
		return "", false, fmt.Errorf("%s: %w", s.name, err)
	}
	return role, found, nil
}

func (s *Store) key(ctx context.Context, query, arg string) (*betterauth.APIKey, error) {
	rows, err := s.query(ctx, query, arg)
	if err != nil {
		return nil, fmt.Errorf("%s: api key lookup: %w", s.name, err)
	}
	defer rows.Close()
	k, duplicate, err := schema.DecodeAPIKey(rows, s.opts.Schema.AllowedIPsField)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", s.name, err)
	}
	if duplicate {
		s.logger.Warn("denying an API key whose hash matches more than one row")
	}
	return k, nil
}

// either reads a value that may be an API key or a session token, with
// Queries.Either.
func (s *Store) either(ctx context.Context, query string, l betterauth.Lookup) (*betterauth.APIKey, *betterauth.Session, error) {
	rows, err := s.query(ctx, query, l.StoredKey(s.opts.PlainKeys), l.Secret)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: api key or session lookup: %w", s.name, err)
	}
	keys, sessions, err := schema.SplitEither(rows)
	rows.Close()
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", s.name, err)
	}
	k, duplicate, err := schema.DecodeAPIKey(keys, s.opts.Schema.AllowedIPsField)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", s.name, err)
	}
	if duplicate {
		s.logger.Warn("denying an API key whose hash matches more than one row")
	}
	sess, err := schema.DecodeSession(sessions)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", s.name, err)
	}
	return k, sess, nil
}

func (s *Store) session(ctx context.Context, query, token string) (*betterauth.Session, error) {
	rows, err := s.query(ctx, query, token)
	if err != nil {
		return nil, fmt.Errorf("%s: session lookup: %w", s.name, err)
	}
	defer rows.Close()
	sess, err := schema.DecodeSession(rows)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", s.name, err)
	}
	return sess, nil
}
