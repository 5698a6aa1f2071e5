package pgstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/caddy-betterauth/caddy-betterauth/oauth"
)

// JWK reads the key whose id is kid from the jwt plugin's jwks table, for
// verifying OAuth access tokens (wrap it in an oauth.CachedKeys: it
// queries the database on every call). The table is jwks, or jwkss when
// the adapters' usePlural is on (configured, or detected from the user
// table's name); see JWKTable for another name.
//
// It returns an error wrapping oauth.ErrKeyNotFound when there is no such
// row, and one wrapping oauth.ErrUnusableKey when the row's key cannot
// verify tokens (see oauth.JWKRow.Key). The private key never leaves the
// database.
func (s *Store) JWK(ctx context.Context, kid string) (oauth.Key, error) {
	return retryRead(ctx, s, func() (oauth.Key, error) { return s.jwk(ctx, "", kid) })
}

// JWKTable is JWK reading the named table: the jwt plugin's
// schema.jwks.modelName.
func (s *Store) JWKTable(table string) oauth.KeyFunc {
	return func(ctx context.Context, kid string) (oauth.Key, error) {
		return retryRead(ctx, s, func() (oauth.Key, error) { return s.jwk(ctx, table, kid) })
	}
}

// jwkSQL reads a jwks row through to_jsonb, which names its columns as
// they are: camelCase (Better-Auth's migrations, Prisma) or snake_case
// (Drizzle), with or without the alg, crv and expiresAt columns (added in
// later releases), in one query and without reading the catalog. The id
// is compared as text, so that a kid that is not a valid uuid (or serial
// integer) finds nothing instead of failing the query.
const jwkSQL = `SELECT k.doc->>'publicKey', k.doc->>'public_key', k.doc->>'alg', k.doc->>'crv',
	k.doc->>'expiresAt', k.doc->>'expires_at', t.id::text
FROM %s AS t, to_jsonb(t) AS k(doc)`

// JWKs reads every key of the jwks table (a handful: Better-Auth keeps the
// current key and those in their grace period), leaving out rows whose
// key cannot verify tokens: for oauth.CachedKeysConfig.All.
func (s *Store) JWKs(ctx context.Context) ([]oauth.Key, error) {
	return retryRead(ctx, s, func() ([]oauth.Key, error) {
		table, err := s.layout.JWKSTable(ctx)
		if err != nil {
			return nil, err
		}
		rows, err := s.db.Query(ctx, fmt.Sprintf(jwkSQL, s.qualify(table))+" LIMIT 1000")
		if err != nil {
			return nil, fmt.Errorf("pgstore: jwks listing: %w", err)
		}
		defer rows.Close()
		var keys []oauth.Key
		for rows.Next() {
			var camel, snake, alg, crv, expiresCamel, expiresSnake, id *string
			if err := rows.Scan(&camel, &snake, &alg, &crv, &expiresCamel, &expiresSnake, &id); err != nil {
				return nil, fmt.Errorf("pgstore: jwks listing: %w", err)
			}
			if k, err := jwkRow(first(id), camel, snake, alg, crv, expiresCamel, expiresSnake); err == nil {
				keys = append(keys, k)
			}
		}
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("pgstore: jwks listing: %w", err)
		}
		return keys, nil
	})
}

func (s *Store) jwk(ctx context.Context, table, kid string) (oauth.Key, error) {
	if table == "" {
		var err error
		if table, err = s.layout.JWKSTable(ctx); err != nil {
			return oauth.Key{}, err
		}
	} else if strings.ContainsRune(table, 0) {
		return oauth.Key{}, errors.New("pgstore: a jwks table name cannot hold a NUL byte")
	}
	rows, err := s.db.Query(ctx, fmt.Sprintf(jwkSQL, s.qualify(table))+" WHERE t.id::text = $1", kid)
	if err != nil {
		return oauth.Key{}, fmt.Errorf("pgstore: jwks lookup: %w", err)
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return oauth.Key{}, fmt.Errorf("pgstore: jwks lookup: %w", err)
		}
		return oauth.Key{}, fmt.Errorf("pgstore: %w", oauth.ErrKeyNotFound)
	}
	var camel, snake, alg, crv, expiresCamel, expiresSnake, id *string
	if err := rows.Scan(&camel, &snake, &alg, &crv, &expiresCamel, &expiresSnake, &id); err != nil {
		return oauth.Key{}, fmt.Errorf("pgstore: jwks lookup: %w", err)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return oauth.Key{}, fmt.Errorf("pgstore: jwks lookup: %w", err)
	}
	return jwkRow(kid, camel, snake, alg, crv, expiresCamel, expiresSnake)
}

// jwkRow reads a jwks row's key.
func jwkRow(kid string, camel, snake, alg, crv, expiresCamel, expiresSnake *string) (oauth.Key, error) {
	row := oauth.JWKRow{ID: kid, PublicKey: first(camel, snake), Alg: first(alg), Crv: first(crv)}
	var err error
	if row.ExpiresAt, err = jsonDate(first(expiresCamel, expiresSnake)); err != nil {
		return oauth.Key{}, fmt.Errorf("pgstore: jwks row %q: %w: %v", kid, oauth.ErrUnusableKey, err)
	}
	return row.Key()
}

// first returns the first non-NULL value, "" if none.
func first(values ...*string) string {
	for _, v := range values {
		if v != nil {
			return *v
		}
	}
	return ""
}

// jsonDate reads a date as to_jsonb writes it: timestamptz with its offset
// ("2026-12-01T10:22:12.012+00:00"), timestamp without one, which
// Better-Auth's adapters write as UTC ("2026-12-01T10:22:12.012"), or
// epoch milliseconds. "" (NULL) and infinity are no expiry.
func jsonDate(s string) (time.Time, error) {
	switch s {
	case "", "infinity":
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse("2006-01-02T15:04:05.999999999", s); err == nil {
		return t, nil
	}
	if ms, err := strconv.ParseInt(s, 10, 64); err == nil {
		return time.UnixMilli(ms).UTC(), nil
	}
	return time.Time{}, fmt.Errorf("expiresAt %q is not a date", s)
}
