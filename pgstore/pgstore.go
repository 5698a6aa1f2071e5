// Package pgstore reads Better-Auth's tables in PostgreSQL through pgx v5.
//
// It supports the schemas Better-Auth users actually have: the default
// (Kysely and `npx auth migrate`) quoted camelCase columns with timestamptz,
// Drizzle's snake_case columns with timestamp (UTC wall time), the legacy
// userId api-key table of better-auth 1.3 and 1.4, custom table and column
// names, and an optional schema. The admin plugin's columns (role, banned,
// banExpires) are optional: they are read from the row's JSON, so a database
// without the plugin works unchanged.
//
// Every lookup is one query (one network round trip once pgx has prepared
// it); a lookup that may be either an API key or a session sends both queries
// in one pipelined batch. The store never writes.
package pgstore

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"

	"github.com/caddy-betterauth/caddy-betterauth/betterauth"
)

// DBTX is what the store needs from a connection: *pgxpool.Pool, *pgx.Conn
// and pgx.Tx all satisfy it.
type DBTX interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
}

// Options configure a Store.
type Options struct {
	Schema Schema
	// PlainKeys matches the api-key plugin's disableKeyHashing: apikey.key
	// holds the key itself.
	PlainKeys bool
	// Logger receives warnings about data the store refuses (a key hash that
	// matches several rows). Default: no logging.
	Logger *zap.Logger
}

// Store implements betterauth.Store on PostgreSQL. It does not own db; the
// caller closes it.
type Store struct {
	db         DBTX
	plainKeys  bool
	logger     *zap.Logger
	keySQL     string
	sessionSQL string
}

// New returns a Store reading through db.
func New(db DBTX, opts Options) (*Store, error) {
	r, err := opts.Schema.resolve()
	if err != nil {
		return nil, fmt.Errorf("pgstore: %w", err)
	}
	s := &Store{db: db, plainKeys: opts.PlainKeys, logger: opts.Logger}
	if s.logger == nil {
		s.logger = zap.NewNop()
	}
	s.keySQL, s.sessionSQL = r.queries()
	return s, nil
}

// queries builds the two lookups from sanitized identifiers only. Values are
// always parameters.
//
// The admin plugin's columns are read from to_jsonb of the user row, which
// yields NULL for a column that does not exist instead of failing the query.
func (r *resolved) queries() (keySQL, sessionSQL string) {
	c := r.col
	user := fmt.Sprintf(`u.%s, u.%s, u.%s, uj.j ->> %s, uj.j ->> %s, uj.j ->> %s`,
		c["user.id"], c["user.email"], c["user.name"],
		quoteLiteral(r.raw["user.role"]), quoteLiteral(r.raw["user.banned"]), quoteLiteral(r.raw["user.banExpires"]))
	configID := "NULL::text"
	if r.hasConfigID {
		configID = "k." + c["apikey.configId"]
	}
	keySQL = fmt.Sprintf(`SELECT k.%s, %s, k.%s, k.%s, k.%s::int8, k.%s::int8, k.%s::int8, k.%s, k.%s, %s
FROM %s k
JOIN %s u ON u.%s = k.%s
CROSS JOIN LATERAL (SELECT to_jsonb(u) AS j) uj
WHERE k.%s = $1
LIMIT 2`,
		c["apikey.id"], configID, c["apikey.enabled"], c["apikey.expiresAt"], c["apikey.remaining"],
		c["apikey.refillInterval"], c["apikey.refillAmount"], c["apikey.lastRefillAt"], c["apikey.createdAt"], user,
		r.apikey, r.user, c["user.id"], c[r.owner], c["apikey.key"])
	sessionSQL = fmt.Sprintf(`SELECT s.%s, s.%s, %s
FROM %s s
JOIN %s u ON u.%s = s.%s
CROSS JOIN LATERAL (SELECT to_jsonb(u) AS j) uj
WHERE s.%s = $1
LIMIT 2`,
		c["session.id"], c["session.expiresAt"], user,
		r.session, r.user, c["user.id"], c["session.userId"], c["session.token"])
	return keySQL, sessionSQL
}

func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// Queries returns the SQL the store runs, for docs and the doctor.
func (s *Store) Queries() (apiKey, session string) { return s.keySQL, s.sessionSQL }

// Lookup implements betterauth.Store.
func (s *Store) Lookup(ctx context.Context, l betterauth.Lookup) (betterauth.Record, error) {
	switch l.Mode {
	case betterauth.ModeAPIKey:
		rows, err := s.db.Query(ctx, s.keySQL, s.keyArg(l))
		if err != nil {
			return betterauth.Record{}, fmt.Errorf("pgstore: api key lookup: %w", err)
		}
		k, err := s.collectKey(rows)
		return betterauth.Record{APIKey: k}.Seal(), err
	case betterauth.ModeSession:
		rows, err := s.db.Query(ctx, s.sessionSQL, l.Secret)
		if err != nil {
			return betterauth.Record{}, fmt.Errorf("pgstore: session lookup: %w", err)
		}
		sess, err := collectSession(rows)
		return betterauth.Record{Session: sess}.Seal(), err
	case betterauth.ModeEither:
		return s.lookupEither(ctx, l)
	}
	return betterauth.Record{}, fmt.Errorf("pgstore: unknown lookup mode %d", l.Mode)
}

// lookupEither sends both queries in one pipelined batch: one round trip.
func (s *Store) lookupEither(ctx context.Context, l betterauth.Lookup) (betterauth.Record, error) {
	var b pgx.Batch
	b.Queue(s.keySQL, s.keyArg(l))
	b.Queue(s.sessionSQL, l.Secret)
	br := s.db.SendBatch(ctx, &b)
	defer br.Close()
	rows, err := br.Query()
	if err != nil {
		return betterauth.Record{}, fmt.Errorf("pgstore: api key lookup: %w", err)
	}
	k, err := s.collectKey(rows)
	if err != nil {
		return betterauth.Record{}, err
	}
	rows, err = br.Query()
	if err != nil {
		return betterauth.Record{}, fmt.Errorf("pgstore: session lookup: %w", err)
	}
	sess, err := collectSession(rows)
	if err != nil {
		return betterauth.Record{}, err
	}
	if err := br.Close(); err != nil {
		return betterauth.Record{}, fmt.Errorf("pgstore: lookup batch: %w", err)
	}
	if k != nil {
		sess = nil // an API key equal to a session token: the key wins
	}
	return betterauth.Record{APIKey: k, Session: sess}.Seal(), nil
}

func (s *Store) keyArg(l betterauth.Lookup) string {
	if s.plainKeys {
		return l.Secret
	}
	return l.KeyHash()
}

type userCols struct {
	id, email, name string
	role, banned    *string
	banExpires      *string
}

func (u *userCols) dest() []any {
	return []any{&u.id, &u.email, &u.name, &u.role, &u.banned, &u.banExpires}
}

func (u *userCols) user() (*betterauth.User, error) {
	out := &betterauth.User{ID: u.id, Email: u.email, Name: u.name}
	if u.role != nil {
		out.Role = *u.role
	}
	if u.banned != nil {
		b, err := strconv.ParseBool(*u.banned)
		if err != nil {
			return nil, fmt.Errorf("pgstore: user.banned: %w", err)
		}
		out.Banned = b
	}
	if u.banExpires != nil {
		t, err := parseJSONTime(*u.banExpires)
		if err != nil {
			return nil, fmt.Errorf("pgstore: user.banExpires: %w", err)
		}
		out.BanExpires = t
	}
	return out, nil
}

// parseJSONTime reads a timestamp as to_jsonb writes it: with an offset for
// timestamptz, without one for timestamp (which Better-Auth's adapters
// write as UTC wall time).
func parseJSONTime(s string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	return time.ParseInLocation("2006-01-02T15:04:05.999999999", s, time.UTC)
}

func (s *Store) collectKey(rows pgx.Rows) (*betterauth.APIKey, error) {
	defer rows.Close()
	var (
		k                                       betterauth.APIKey
		configID                                *string
		enabled                                 *bool
		expiresAt, lastRefillAt                 *time.Time
		remaining, refillInterval, refillAmount *int64
		u                                       userCols
		n                                       int
	)
	dest := append([]any{&k.ID, &configID, &enabled, &expiresAt, &remaining, &refillInterval, &refillAmount, &lastRefillAt, &k.CreatedAt}, u.dest()...)
	for rows.Next() {
		n++
		if n > 1 {
			break
		}
		if err := rows.Scan(dest...); err != nil {
			return nil, fmt.Errorf("pgstore: api key row: %w", err)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("pgstore: api key lookup: %w", err)
	}
	switch n {
	case 0:
		return nil, nil
	case 1:
	default:
		// apikey.key is indexed but not unique. Two rows with one hash cannot
		// be told apart, so neither is trusted.
		s.logger.Warn("api key hash matches more than one row; denying", zap.String("key_id", k.ID))
		return nil, nil
	}
	if configID != nil {
		k.ConfigID = *configID
	}
	k.Enabled = enabled == nil || *enabled
	if expiresAt != nil {
		k.ExpiresAt = *expiresAt
	}
	if remaining != nil {
		k.HasRemaining, k.Remaining = true, *remaining
	}
	if refillInterval != nil {
		k.RefillInterval = time.Duration(*refillInterval) * time.Millisecond
	}
	if refillAmount != nil {
		k.HasRefillAmount, k.RefillAmount = true, *refillAmount
	}
	if lastRefillAt != nil {
		k.LastRefillAt = *lastRefillAt
	}
	user, err := u.user()
	if err != nil {
		return nil, err
	}
	k.User = user
	return &k, nil
}

func collectSession(rows pgx.Rows) (*betterauth.Session, error) {
	defer rows.Close()
	var (
		s     betterauth.Session
		u     userCols
		found bool
	)
	dest := append([]any{&s.ID, &s.ExpiresAt}, u.dest()...)
	if rows.Next() { // session.token is unique: one row at most
		if err := rows.Scan(dest...); err != nil {
			return nil, fmt.Errorf("pgstore: session row: %w", err)
		}
		found = true
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("pgstore: session lookup: %w", err)
	}
	if !found {
		return nil, nil
	}
	user, err := u.user()
	if err != nil {
		return nil, err
	}
	s.User = user
	return &s, nil
}
