// Package pgstore reads Better-Auth's tables in PostgreSQL through pgx v5.
//
// On first use it reads the catalog (information_schema) and works out the
// layout with package schema: Better-Auth's own migrations (quoted camelCase
// columns, timestamptz), Drizzle's snake_case with timestamp (UTC wall time),
// the legacy userId api-key table of better-auth 1.3 and 1.4, custom table
// and column names, with or without the admin plugin. Explicit configuration
// wins over detection.
//
// Every lookup is one query (one network round trip once pgx has prepared
// it); a lookup that may be either an API key or a session sends both queries
// in one pipelined batch. The store writes only to count API-key uses
// (ClaimUsage), when usage counting is on.
//
// A read that fails because its connection is gone (the server restarted,
// the socket was reset) is run once more on a new connection, after
// resetting the pool, whose idle connections died with the server: a
// PostgreSQL restart costs no request. Query errors, timeouts and
// cancellations are never retried.
package pgstore

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"

	"github.com/caddy-betterauth/caddy-betterauth/betterauth"
	"github.com/caddy-betterauth/caddy-betterauth/schema"
)

// DBTX is what the store needs from a connection: *pgxpool.Pool, *pgx.Conn
// and pgx.Tx all satisfy it.
type DBTX interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
}

// Options configure a Store.
type Options struct {
	// Schema is what the operator configured; the rest is detected.
	Schema schema.Config
	// PGSchema is the PostgreSQL schema holding the tables; empty means the
	// connection's current schema (the first of its search_path).
	PGSchema string
	// PlainKeys matches the api-key plugin's disableKeyHashing: apikey.key
	// holds the key itself.
	PlainKeys bool
	// Logger receives the detected layout and warnings about data the store
	// refuses. Default: no logging.
	Logger *zap.Logger
}

// Store implements betterauth.Store on PostgreSQL. It does not own db; the
// caller closes it.
type Store struct {
	db        DBTX
	opts      Options
	logger    *zap.Logger
	layout    schema.Lazy
	plainKeys bool
	usage     usageSQL
	// writesReady: schema.UsageWritesTable is known to exist.
	writesReady atomic.Bool
	writesMu    sync.Mutex
}

// New returns a Store reading through db. It does no I/O.
func New(db DBTX, opts Options) (*Store, error) {
	if err := opts.Schema.Validate(); err != nil {
		return nil, fmt.Errorf("pgstore: %w", err)
	}
	s := &Store{db: db, opts: opts, logger: opts.Logger, plainKeys: opts.PlainKeys}
	if s.logger == nil {
		s.logger = zap.NewNop()
	}
	s.layout = schema.Lazy{
		Name:    "pgstore",
		Config:  opts.Schema,
		Dialect: schema.Dialect{Qualify: s.qualify, Param: "$1", Param2: "$2", JSONArray: schema.PostgresJSONArray},
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
	rows, err := s.db.Query(ctx, `SELECT table_name::text, column_name::text FROM information_schema.columns
WHERE table_schema = COALESCE(NULLIF($1, ''), current_schema()) AND table_name = ANY($2)
ORDER BY table_name, ordinal_position`, s.opts.PGSchema, s.opts.Schema.Candidates())
	if err != nil {
		return nil, fmt.Errorf("reading the catalog: %w", err)
	}
	cat := schema.Catalog{}
	var table, column string
	_, err = pgx.ForEachRow(rows, []any{&table, &column}, func() error {
		cat[table] = append(cat[table], column)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading the catalog: %w", err)
	}
	return cat, nil
}

// Layout returns the detected layout, reading the catalog on first use.
func (s *Store) Layout(ctx context.Context) (*schema.Layout, error) { return s.layout.Layout(ctx) }

func (s *Store) prepare(ctx context.Context) (*schema.Prepared, error) { return s.layout.Get(ctx) }

func (s *Store) qualify(table string) string {
	if s.opts.PGSchema != "" {
		return pgx.Identifier{s.opts.PGSchema, table}.Sanitize()
	}
	return pgx.Identifier{table}.Sanitize()
}

// Queries returns the SQL the store runs once it has detected the layout.
func (s *Store) Queries(ctx context.Context) (schema.Queries, error) {
	p, err := s.prepare(ctx)
	if err != nil {
		return schema.Queries{}, err
	}
	return p.Queries, nil
}

// Lookup implements betterauth.Store. A lookup whose connection turns out
// to be gone (see ConnectionLost) is tried once more on a new connection.
func (s *Store) Lookup(ctx context.Context, l betterauth.Lookup) (betterauth.Record, error) {
	return retryRead(ctx, s, func() (betterauth.Record, error) { return s.lookup(ctx, l) })
}

func (s *Store) lookup(ctx context.Context, l betterauth.Lookup) (betterauth.Record, error) {
	p, err := s.prepare(ctx)
	if err != nil {
		return betterauth.Record{}, err
	}
	// The tables this kind reads and this database has, in order of
	// precedence: a key equal to a session token wins, and an OAuth token
	// comes last (their stored forms cannot collide in practice).
	var parts [3]part
	n := 0
	if l.Kind.Reads(betterauth.KindAPIKey) && p.Queries.APIKey != "" {
		parts[n] = part{"api key", p.Queries.APIKey, l.StoredKey(s.plainKeys), s.decodeKey}
		n++
	}
	if l.Kind.Reads(betterauth.KindSession) && p.Queries.Session != "" {
		parts[n] = part{"session", p.Queries.Session, l.Secret, decodeSession}
		n++
	}
	if o := p.Layout.OAuth; o != nil && l.Kind.Reads(betterauth.KindOAuth) {
		arg := l.KeyHash() // base64url(SHA-256), as the OAuth provider stores it
		if o.Legacy {
			arg = l.Secret
		}
		parts[n] = part{"oauth token", p.Queries.OAuth, arg, decodeOAuth(o.Legacy)}
		n++
	}
	var rec betterauth.Record
	switch n {
	case 0:
		return rec, nil // no table for this kind of credential
	case 1:
		rows, err := s.db.Query(ctx, parts[0].sql, parts[0].arg)
		if err != nil {
			return rec, fmt.Errorf("pgstore: %s lookup: %w", parts[0].name, err)
		}
		err = parts[0].decode(rows, &rec)
		return rec, err
	}
	// Several in one pipelined batch: one round trip.
	var b pgx.Batch
	for _, pt := range parts[:n] {
		b.Queue(pt.sql, pt.arg)
	}
	br := s.db.SendBatch(ctx, &b)
	defer br.Close()
	for _, pt := range parts[:n] {
		rows, err := br.Query()
		if err != nil {
			return betterauth.Record{}, fmt.Errorf("pgstore: %s lookup: %w", pt.name, err)
		}
		if err := pt.decode(rows, &rec); err != nil {
			return betterauth.Record{}, err
		}
	}
	if err := br.Close(); err != nil {
		return betterauth.Record{}, fmt.Errorf("pgstore: lookup batch: %w", err)
	}
	switch {
	case rec.APIKey != nil:
		rec.Session, rec.OAuth = nil, nil
	case rec.Session != nil:
		rec.OAuth = nil
	}
	return rec, nil
}

// part is one query of a lookup, and how its rows land in the record.
type part struct {
	name, sql, arg string
	decode         func(pgx.Rows, *betterauth.Record) error
}

func (s *Store) decodeKey(rows pgx.Rows, rec *betterauth.Record) (err error) {
	rec.APIKey, err = s.collectKey(rows)
	return err
}

func decodeSession(rows pgx.Rows, rec *betterauth.Record) (err error) {
	rec.Session, err = collectSession(rows)
	return err
}

func decodeOAuth(legacy bool) func(pgx.Rows, *betterauth.Record) error {
	return func(rows pgx.Rows, rec *betterauth.Record) error {
		defer rows.Close()
		t, err := schema.DecodeOAuth(rows, legacy)
		if err != nil {
			return fmt.Errorf("pgstore: %w", err)
		}
		rec.OAuth = t
		return nil
	}
}

// OAuthGrant reads the rows a verified JWT access token names (see
// schema.Queries.OAuthGrant), retrying once as Lookup does; nil without
// the OAuth provider's tables.
func (s *Store) OAuthGrant(ctx context.Context, g schema.Grant) (*betterauth.OAuthToken, error) {
	return retryRead(ctx, s, func() (*betterauth.OAuthToken, error) {
		p, err := s.prepare(ctx)
		if err != nil || p.Queries.OAuthGrant == "" {
			return nil, err
		}
		rows, err := s.db.Query(ctx, p.Queries.OAuthGrant, g.Args(false)...)
		if err != nil {
			return nil, fmt.Errorf("pgstore: oauth grant lookup: %w", err)
		}
		defer rows.Close()
		t, err := schema.DecodeOAuthGrant(rows, g)
		if err != nil {
			return nil, fmt.Errorf("pgstore: %w", err)
		}
		return t, nil
	})
}

// OAuthResource reports whether the OAuth provider knows the resource
// identifier (an oauthResource row); false without the table.
func (s *Store) OAuthResource(ctx context.Context, identifier string) (bool, error) {
	return retryRead(ctx, s, func() (bool, error) {
		p, err := s.prepare(ctx)
		if err != nil || p.Queries.OAuthResource == "" {
			return false, err
		}
		rows, err := s.db.Query(ctx, p.Queries.OAuthResource, identifier)
		if err != nil {
			return false, fmt.Errorf("pgstore: oauth resource lookup: %w", err)
		}
		defer rows.Close()
		found := rows.Next()
		return found, rows.Err()
	})
}

// User reads one user by id, retrying once as Lookup does.
func (s *Store) User(ctx context.Context, id string) (*betterauth.User, error) {
	return retryRead(ctx, s, func() (*betterauth.User, error) { return s.user(ctx, id) })
}

func (s *Store) user(ctx context.Context, id string) (*betterauth.User, error) {
	p, err := s.prepare(ctx)
	if err != nil {
		return nil, err
	}
	rows, err := s.db.Query(ctx, p.Queries.User, id)
	if err != nil {
		return nil, fmt.Errorf("pgstore: user lookup: %w", err)
	}
	defer rows.Close()
	u, err := schema.DecodeUser(rows)
	if err != nil {
		return nil, fmt.Errorf("pgstore: %w", err)
	}
	return u, nil
}

// Owner reads the user and the organization whose id is id, either or
// both nil when there is none (the organization always without the
// organization plugin), in one round trip: the owner of an API key kept in
// secondary storage, which only the key's configuration can name. It
// retries once as Lookup does.
func (s *Store) Owner(ctx context.Context, id string) (*betterauth.User, *betterauth.Organization, error) {
	type owner struct {
		u *betterauth.User
		o *betterauth.Organization
	}
	got, err := retryRead(ctx, s, func() (owner, error) {
		u, o, err := s.owner(ctx, id)
		return owner{u, o}, err
	})
	return got.u, got.o, err
}

func (s *Store) owner(ctx context.Context, id string) (*betterauth.User, *betterauth.Organization, error) {
	p, err := s.prepare(ctx)
	if err != nil {
		return nil, nil, err
	}
	if p.Queries.Organization == "" {
		u, err := s.user(ctx, id)
		return u, nil, err
	}
	var b pgx.Batch
	b.Queue(p.Queries.User, id)
	b.Queue(p.Queries.Organization, id)
	br := s.db.SendBatch(ctx, &b)
	defer br.Close()
	rows, err := br.Query()
	if err != nil {
		return nil, nil, fmt.Errorf("pgstore: user lookup: %w", err)
	}
	u, err := schema.DecodeUser(rows)
	rows.Close()
	if err != nil {
		return nil, nil, fmt.Errorf("pgstore: %w", err)
	}
	if rows, err = br.Query(); err != nil {
		return nil, nil, fmt.Errorf("pgstore: organization lookup: %w", err)
	}
	o, err := schema.DecodeOrganization(rows)
	rows.Close()
	if err != nil {
		return nil, nil, fmt.Errorf("pgstore: %w", err)
	}
	if err := br.Close(); err != nil {
		return nil, nil, fmt.Errorf("pgstore: owner batch: %w", err)
	}
	return u, o, nil
}

// Member reads the role of user userID in organization orgID, and whether
// they are a member; not a member without the organization plugin. It
// retries once as Lookup does.
func (s *Store) Member(ctx context.Context, orgID, userID string) (string, bool, error) {
	type member struct {
		role  string
		found bool
	}
	got, err := retryRead(ctx, s, func() (member, error) {
		p, err := s.prepare(ctx)
		if err != nil || p.Queries.Member == "" {
			return member{}, err
		}
		rows, err := s.db.Query(ctx, p.Queries.Member, orgID, userID)
		if err != nil {
			return member{}, fmt.Errorf("pgstore: member lookup: %w", err)
		}
		defer rows.Close()
		role, found, err := schema.DecodeMember(rows)
		if err != nil {
			return member{}, fmt.Errorf("pgstore: %w", err)
		}
		return member{role, found}, nil
	})
	return got.role, got.found, err
}

func (s *Store) collectKey(rows pgx.Rows) (*betterauth.APIKey, error) {
	defer rows.Close()
	k, duplicate, err := schema.DecodeAPIKey(rows, s.opts.Schema.AllowedIPsField)
	if err != nil {
		return nil, fmt.Errorf("pgstore: %w", err)
	}
	if duplicate {
		s.logger.Warn("denying an API key whose hash matches more than one row")
	}
	return k, nil
}

func collectSession(rows pgx.Rows) (*betterauth.Session, error) {
	defer rows.Close()
	sess, err := schema.DecodeSession(rows)
	if err != nil {
		return nil, fmt.Errorf("pgstore: %w", err)
	}
	return sess, nil
}
