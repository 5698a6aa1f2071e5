package sqlitestore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/caddy-betterauth/caddy-betterauth/oauth"
	"github.com/caddy-betterauth/caddy-betterauth/schema"
)

// JWK reads the key whose id is kid from the jwt plugin's jwks table, for
// verifying OAuth access tokens (wrap it in an oauth.CachedKeys: it
// queries the database on every call). The table is jwks, or jwkss when
// the adapters' usePlural is on (configured, or detected from the user
// table's name); see JWKTable for another name.
//
// It returns an error wrapping oauth.ErrKeyNotFound when there is no such
// row, and one wrapping oauth.ErrUnusableKey when the row's key cannot
// verify tokens (see oauth.JWKRow.Key). The private key is not read.
func (s *Store) JWK(ctx context.Context, kid string) (oauth.Key, error) {
	return s.jwk(ctx, "", kid)
}

// JWKTable is JWK reading the named table: the jwt plugin's
// schema.jwks.modelName.
func (s *Store) JWKTable(table string) oauth.KeyFunc {
	return func(ctx context.Context, kid string) (oauth.Key, error) { return s.jwk(ctx, table, kid) }
}

func (s *Store) jwk(ctx context.Context, table, kid string) (oauth.Key, error) {
	if table == "" {
		var err error
		if table, err = s.jwksTable(ctx); err != nil {
			return oauth.Key{}, err
		}
	} else if strings.ContainsRune(table, 0) {
		return oauth.Key{}, fmt.Errorf("%s: a jwks table name cannot hold a NUL byte", s.name)
	}
	query, err := s.jwkSQL(ctx, table)
	if err != nil {
		return oauth.Key{}, err
	}
	query += ` WHERE "id" = ` + s.layout.Dialect.Param
	var publicKey, alg, crv sql.NullString
	var expires any
	err = s.db.QueryRowContext(ctx, query, kid).Scan(&publicKey, &alg, &crv, &expires)
	if errors.Is(err, sql.ErrNoRows) {
		return oauth.Key{}, fmt.Errorf("%s: %w", s.name, oauth.ErrKeyNotFound)
	}
	if err != nil {
		return oauth.Key{}, fmt.Errorf("%s: jwks lookup: %w", s.name, err)
	}
	row := oauth.JWKRow{ID: kid, PublicKey: publicKey.String, Alg: alg.String, Crv: crv.String}
	if row.ExpiresAt, err = date(expires); err != nil {
		return oauth.Key{}, fmt.Errorf("%s: jwks row %q: %w: %v", s.name, kid, oauth.ErrUnusableKey, err)
	}
	return row.Key()
}

// jwkSQL builds the query of one row of table from the columns it has:
// camelCase (Better-Auth's migrations) or snake_case (Drizzle), with or
// without the alg, crv and expiresAt columns (added in later releases).
// Reading the catalog costs no round trip in SQLite.
func (s *Store) jwkSQL(ctx context.Context, table string) (string, error) {
	var list []string
	if s.opts.Catalog != nil {
		cat, err := s.opts.Catalog(ctx, s.db, []string{table})
		if err != nil {
			return "", fmt.Errorf("%s: reading the jwks table's columns: %w", s.name, err)
		}
		list = cat[table]
	} else {
		rows, err := s.db.QueryContext(ctx, `SELECT name FROM pragma_table_info(?)`, table)
		if err != nil {
			return "", fmt.Errorf("%s: reading the jwks table's columns: %w", s.name, err)
		}
		defer rows.Close()
		for rows.Next() {
			var c string
			if err := rows.Scan(&c); err != nil {
				return "", fmt.Errorf("%s: reading the jwks table's columns: %w", s.name, err)
			}
			list = append(list, c)
		}
		if err := rows.Err(); err != nil {
			return "", fmt.Errorf("%s: reading the jwks table's columns: %w", s.name, err)
		}
	}
	cols := map[string]bool{}
	for _, c := range list {
		cols[c] = true
	}
	if len(cols) == 0 {
		return "", fmt.Errorf("%s: no jwks table %q", s.name, table)
	}
	column := func(camel string) string {
		for _, c := range []string{camel, schema.Snake(camel)} {
			if cols[c] {
				return schema.QuoteIdent(c)
			}
		}
		return "NULL"
	}
	pk := column("publicKey")
	if pk == "NULL" || !cols["id"] {
		return "", fmt.Errorf("%s: jwks table %q has no id or publicKey column", s.name, table)
	}
	return fmt.Sprintf(`SELECT %s, %s, %s, %s FROM %s`,
		pk, column("alg"), column("crv"), column("expiresAt"), schema.QuoteIdent(table)), nil
}

// JWKs reads every key of the jwks table (a handful: Better-Auth keeps the
// current key and those in their grace period), leaving out rows whose
// key cannot verify tokens: for oauth.CachedKeysConfig.All.
func (s *Store) JWKs(ctx context.Context) ([]oauth.Key, error) {
	table, err := s.jwksTable(ctx)
	if err != nil {
		return nil, err
	}
	query, err := s.jwkSQL(ctx, table)
	if err != nil {
		return nil, err
	}
	// The id as text: CHAR is a text type to SQLite and MySQL alike.
	rows, err := s.db.QueryContext(ctx, strings.Replace(query, "SELECT ", `SELECT CAST("id" AS CHAR), `, 1)+" LIMIT 1000")
	if err != nil {
		return nil, fmt.Errorf("%s: jwks listing: %w", s.name, err)
	}
	defer rows.Close()
	var keys []oauth.Key
	for rows.Next() {
		var id, publicKey, alg, crv sql.NullString
		var expires any
		if err := rows.Scan(&id, &publicKey, &alg, &crv, &expires); err != nil {
			return nil, fmt.Errorf("%s: jwks listing: %w", s.name, err)
		}
		row := oauth.JWKRow{ID: id.String, PublicKey: publicKey.String, Alg: alg.String, Crv: crv.String}
		if row.ExpiresAt, err = date(expires); err != nil {
			continue
		}
		if k, err := row.Key(); err == nil {
			keys = append(keys, k)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("%s: jwks listing: %w", s.name, err)
	}
	return keys, nil
}

// jwksTable is the jwks table's name: jwkss when the adapters' usePlural
// is configured, or the user table detected is "users".
func (s *Store) jwksTable(ctx context.Context) (string, error) {
	if s.opts.Schema.UsePlural {
		return "jwkss", nil
	}
	l, err := s.Layout(ctx)
	if err != nil {
		return "", err
	}
	if s.opts.Schema.UserTable == "" && l.User.Name == "users" {
		return "jwkss", nil
	}
	return "jwks", nil
}

// date reads expiresAt as the adapters store it in SQLite: ISO-8601 text
// (Kysely), epoch milliseconds (Drizzle), or a time the driver parsed
// from a column declared date; NULL is no expiry.
func date(v any) (time.Time, error) {
	switch x := v.(type) {
	case nil:
		return time.Time{}, nil
	case time.Time:
		return x, nil
	case int64:
		return time.UnixMilli(x).UTC(), nil
	case float64:
		return time.UnixMilli(int64(x)).UTC(), nil
	case []byte:
		return date(string(x))
	case string:
		for _, layout := range []string{time.RFC3339Nano, "2006-01-02 15:04:05.999999999Z07:00", "2006-01-02 15:04:05.999999999"} {
			if t, err := time.Parse(layout, x); err == nil {
				return t, nil
			}
		}
	}
	return time.Time{}, fmt.Errorf("expiresAt %v is not a date", v)
}
