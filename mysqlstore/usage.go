package mysqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/caddy-betterauth/caddy-betterauth/schema"
	"github.com/caddy-betterauth/caddy-betterauth/usage"
)

// Usage counts API-key uses on their rows (usage.Claimer), in Better-Auth's
// own MySQL form: its Kysely adapter's incrementOne is a transaction that
// locks the row with SELECT ... FOR UPDATE and then updates it, so the
// app's verifies and the gateway's queue on the same row lock.
type Usage struct {
	db     *sql.DB // from OpenWritable
	layout func(context.Context) (*schema.Layout, error)
	once   sync.Once
	sql    *schema.UsageSQL
	err    error
	stmts  sync.Map // statement text → *sql.Stmt, prepared once per connection
}

// NewUsage returns the claimer writing through db (from OpenWritable) on
// the layout the lookups detect (Store.Layout). It does no I/O.
func NewUsage(db *sql.DB, layout func(context.Context) (*schema.Layout, error)) *Usage {
	return &Usage{db: db, layout: layout}
}

// ClaimUsage implements usage.Claimer: one transaction reads the usage
// columns under the row's lock (FOR UPDATE, the id compared byte for
// byte), decides with rules.Plan, writes only the columns that change, and
// commits. Dates are written as time.Time in UTC at the millisecond, which
// datetime(3) and timestamp(3) columns hold as mysql2 with timezone "Z"
// writes Better-Auth's.
func (u *Usage) ClaimUsage(ctx context.Context, id string, rules usage.Rules, clock func() time.Time) (row usage.Row, now time.Time, found bool, err error) {
	sqls, err := u.statements(ctx)
	if err != nil {
		return row, now, false, err
	}
	sel, err := u.stmt(ctx, sqls.Select)
	if err != nil {
		return row, now, false, fmt.Errorf("mysqlstore: counting a use: %w", err)
	}
	tx, err := u.db.BeginTx(ctx, nil)
	if err != nil {
		return row, now, false, fmt.Errorf("mysqlstore: counting a use: %w", err)
	}
	defer func() {
		if err != nil {
			tx.Rollback()
		}
	}()
	vals := make([]any, len(schema.UsageFields))
	ptrs := make([]any, len(vals))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	switch err = tx.StmtContext(ctx, sel).QueryRowContext(ctx, id).Scan(ptrs...); {
	case errors.Is(err, sql.ErrNoRows):
		err = nil
	case err != nil:
		return row, now, false, fmt.Errorf("mysqlstore: counting a use: %w", err)
	default:
		found = true
		if row, err = schema.DecodeUsage(vals); err != nil {
			return row, now, false, fmt.Errorf("mysqlstore: %w", err)
		}
		// Read under the lock: uses are ordered as they are written.
		now = clock()
		if _, w := rules.Plan(row, now); w.Set != 0 {
			q := sqls.Update(uint8(w.Set))
			args := append(w.Values(func(t time.Time) any { return t.UTC() }), id)
			if st, ok := u.stmts.Load(q); ok {
				_, err = tx.StmtContext(ctx, st.(*sql.Stmt)).ExecContext(ctx, args...)
			} else {
				// Not prepared on the pool yet, which would take a second
				// connection while this one holds the lock: once unprepared
				// on the transaction's, then prepared after the commit.
				_, err = tx.ExecContext(ctx, q, args...)
				defer u.stmt(ctx, q)
			}
			if err != nil {
				return row, now, false, fmt.Errorf("mysqlstore: counting a use: %w", err)
			}
		}
	}
	if err = tx.Commit(); err != nil {
		return row, now, false, fmt.Errorf("mysqlstore: counting a use: %w", err)
	}
	return row, now, found, nil
}

// statements builds the usage statements once the layout is known (a
// failure to read it is retried on the next use; one to build from it is
// not, it would fail alike).
func (u *Usage) statements(ctx context.Context) (*schema.UsageSQL, error) {
	l, err := u.layout(ctx)
	if err != nil {
		return nil, err
	}
	u.once.Do(func() {
		u.sql, u.err = l.BuildUsage(Dialect, true)
		if u.err != nil {
			u.err = fmt.Errorf("mysqlstore: %w", u.err)
		}
	})
	return u.sql, u.err
}

// stmt returns q prepared on the pool: database/sql prepares it once per
// connection, and a transaction reuses its connection's (Tx.StmtContext),
// so each statement of a claim is one round trip.
func (u *Usage) stmt(ctx context.Context, q string) (*sql.Stmt, error) {
	if st, ok := u.stmts.Load(q); ok {
		return st.(*sql.Stmt), nil
	}
	st, err := u.db.PrepareContext(ctx, q)
	if err != nil {
		return nil, err
	}
	if prev, loaded := u.stmts.LoadOrStore(q, st); loaded {
		st.Close()
		return prev.(*sql.Stmt), nil
	}
	return st, nil
}
