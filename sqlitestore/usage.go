package sqlitestore

import (
	"context"
	"fmt"
	"time"

	"github.com/caddy-betterauth/caddy-betterauth/schema"
	"github.com/caddy-betterauth/caddy-betterauth/usage"
)

// ClaimUsage implements usage.Claimer: BEGIN IMMEDIATE takes the
// database's write lock (waiting up to the busy timeout for the app's), so
// the read, the decision and the write are one step. Dates are written in
// the form the row keeps them: ISO-8601 text, or epoch milliseconds.
func (s *Store) ClaimUsage(ctx context.Context, id string, rules usage.Rules, clock func() time.Time) (row usage.Row, now time.Time, found bool, err error) {
	p, err := s.prepare(ctx)
	if err != nil {
		return row, now, false, err
	}
	s.usage.once.Do(func() {
		s.usage.sql, s.usage.err = p.Layout.BuildUsage(schema.Dialect{Qualify: schema.QuoteIdent, Param: "?"}, false)
	})
	if s.usage.err != nil {
		return row, now, false, s.usage.err
	}
	sqls := s.usage.sql
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return row, now, false, fmt.Errorf("sqlitestore: counting a use: %w", err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		return row, now, false, fmt.Errorf("sqlitestore: counting a use: %w", err)
	}
	defer func() {
		if err != nil {
			// A fresh context: the caller's may be what ended the work.
			conn.ExecContext(context.WithoutCancel(ctx), "ROLLBACK")
		}
	}()
	vals := make([]any, len(schema.UsageFields))
	ptrs := make([]any, len(vals))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	rows, err := conn.QueryContext(ctx, sqls.Select, id)
	if err != nil {
		return row, now, false, fmt.Errorf("sqlitestore: counting a use: %w", err)
	}
	if rows.Next() {
		found = true
		err = rows.Scan(ptrs...)
	}
	if cerr := rows.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = rows.Err()
	}
	if err != nil {
		return row, now, false, fmt.Errorf("sqlitestore: counting a use: %w", err)
	}
	if found {
		if row, err = schema.DecodeUsage(vals); err != nil {
			err = fmt.Errorf("sqlitestore: %w", err)
			return row, now, false, err
		}
		// The clock is read under the lock: uses are ordered as they are
		// written.
		now = clock()
		if _, w := rules.Plan(row, now); w.Set != 0 {
			form := schema.DateFormOf(vals[schema.CreatedAtIndex])
			if _, err = conn.ExecContext(ctx, sqls.Update(uint8(w.Set)), append(w.Values(form.Value), id)...); err != nil {
				return row, now, false, fmt.Errorf("sqlitestore: counting a use: %w", err)
			}
		}
	}
	if _, err = conn.ExecContext(ctx, "COMMIT"); err != nil {
		return row, now, false, fmt.Errorf("sqlitestore: counting a use: %w", err)
	}
	return row, now, found, nil
}
