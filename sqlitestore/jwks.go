package sqlitestore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

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
		if table, err = s.layout.JWKSTable(ctx); err != nil {
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
	if row.ExpiresAt, err = schema.Date(expires); err != nil {
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
	table, err := s.layout.JWKSTable(ctx)
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
		if row.ExpiresAt, err = schema.Date(expires); err != nil {
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
