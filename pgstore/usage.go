package pgstore

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/zap"

	"github.com/caddy-betterauth/caddy-betterauth/schema"
	"github.com/caddy-betterauth/caddy-betterauth/usage"
)

// acquirer hands out one connection for a transaction: *pgxpool.Pool.
type acquirer interface {
	Acquire(ctx context.Context) (*pgxpool.Conn, error)
}

// usageSQL builds the usage statements once the layout is known.
type usageSQL struct {
	once sync.Once
	sql  *schema.UsageSQL
	err  error
}

func (s *Store) usageStatements(ctx context.Context) (*schema.UsageSQL, error) {
	p, err := s.prepare(ctx)
	if err != nil {
		return nil, err
	}
	s.usage.once.Do(func() {
		s.usage.sql, s.usage.err = p.Layout.BuildUsage(schema.Dialect{Qualify: s.qualify, Param: "$1"}, true)
	})
	return s.usage.sql, s.usage.err
}

// ClaimUsage implements usage.Claimer: one transaction on one connection,
// in two round trips. The first sends BEGIN and reads the row FOR UPDATE
// (the app's own guarded updates wait for it, then see its result); the
// second writes and commits. A first round trip lost with its connection
// (nothing was written) is tried once more on a new one.
func (s *Store) ClaimUsage(ctx context.Context, id string, plan func(usage.Row) usage.Write) (bool, error) {
	sqls, err := s.usageStatements(ctx)
	if err != nil {
		return false, err
	}
	pool, ok := s.db.(acquirer)
	if !ok {
		return false, errors.New("pgstore: counting uses needs a connection pool")
	}
	found, begun, err := s.claim(ctx, pool, sqls, id, plan)
	if err != nil && !begun && ctx.Err() == nil && ConnectionLost(err) {
		if r, ok := s.db.(resetter); ok {
			r.Reset()
		}
		s.logger.Warn("the database connection was lost; counting the use once more on a new connection", zap.Error(err))
		found, _, err = s.claim(ctx, pool, sqls, id, plan)
	}
	return found, err
}

// claim runs the transaction; begun says whether plan ran (a write may
// then have reached the database, and the use must not be counted again).
func (s *Store) claim(ctx context.Context, pool acquirer, sqls *schema.UsageSQL, id string, plan func(usage.Row) usage.Write) (found, begun bool, err error) {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return false, false, fmt.Errorf("pgstore: counting a use: %w", err)
	}
	defer func() {
		if err != nil {
			// The connection may be inside the transaction: never hand it
			// back to the pool like that.
			closeCtx, cancel := context.WithTimeout(context.Background(), time.Second)
			conn.Conn().Close(closeCtx)
			cancel()
		}
		conn.Release()
	}()
	var b pgx.Batch
	b.Queue("BEGIN")
	b.Queue(markGatewayWrite)
	b.Queue(sqls.Select, id)
	br := conn.SendBatch(ctx, &b)
	vals := make([]any, len(schema.UsageFields))
	if _, err = br.Exec(); err == nil {
		_, err = br.Exec()
	}
	if err == nil {
		var rows pgx.Rows
		if rows, err = br.Query(); err == nil {
			found, err = scanOne(rows, vals)
		}
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return false, false, fmt.Errorf("pgstore: counting a use: %w", err)
	}
	var w usage.Write
	if found {
		row, derr := schema.DecodeUsage(vals)
		if derr != nil {
			err = fmt.Errorf("pgstore: %w", derr)
			return false, false, err
		}
		w = plan(row)
	}
	b = pgx.Batch{}
	if w.Set != 0 {
		b.Queue(sqls.Update(uint8(w.Set)), append(w.Values(func(t time.Time) any { return t.UTC() }), id)...)
	}
	b.Queue("COMMIT")
	br = conn.SendBatch(ctx, &b)
	for range b.Len() {
		if _, err = br.Exec(); err != nil {
			break
		}
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return false, true, fmt.Errorf("pgstore: counting a use: %w", err)
	}
	return found, true, nil
}

// scanOne reads at most one row into vals.
func scanOne(rows pgx.Rows, vals []any) (bool, error) {
	defer rows.Close()
	found := false
	if rows.Next() {
		ptrs := make([]any, len(vals))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return false, err
		}
		found = true
	}
	return found, rows.Err()
}

// ReadUsage implements usage.Mirror: the row's usage columns, unlocked.
func (s *Store) ReadUsage(ctx context.Context, id string) (usage.Row, bool, error) {
	sqls, err := s.usageStatements(ctx)
	if err != nil {
		return usage.Row{}, false, err
	}
	return retryRead3(ctx, s, func() (usage.Row, bool, error) {
		rows, err := s.db.Query(ctx, sqls.Read, id)
		if err != nil {
			return usage.Row{}, false, fmt.Errorf("pgstore: reading usage: %w", err)
		}
		vals := make([]any, len(schema.UsageFields))
		found, err := scanOne(rows, vals)
		if err != nil || !found {
			return usage.Row{}, false, err
		}
		row, err := schema.DecodeUsage(vals)
		return row, err == nil, err
	})
}

func retryRead3[A, B any](ctx context.Context, s *Store, read func() (A, B, error)) (A, B, error) {
	type pair struct {
		a A
		b B
	}
	p, err := retryRead(ctx, s, func() (pair, error) {
		a, b, err := read()
		return pair{a, b}, err
	})
	return p.a, p.b, err
}

// FlushUsage implements usage.Mirror: one transaction for every item,
// marked as the gateway's own write so that the revocation triggers ignore
// it, in one round trip.
func (s *Store) FlushUsage(ctx context.Context, items []usage.FlushItem) ([]usage.Flushed, error) {
	sqls, err := s.usageStatements(ctx)
	if err != nil {
		return nil, err
	}
	optTime := func(t time.Time) any {
		if t.IsZero() {
			return nil
		}
		return t.UTC()
	}
	var b pgx.Batch
	b.Queue("BEGIN")
	b.Queue(markGatewayWrite)
	for _, it := range items {
		f := it.Flush
		var count any
		if f.HasRequestCount {
			count = f.RequestCount
		}
		b.Queue(sqls.Flush, f.Refill, optTime(f.RefilledFrom), f.RemainingAfter, f.Decrements, optTime(f.RefillAt),
			count, optTime(f.LastRequest), f.Token.UTC(), it.ID)
	}
	b.Queue("COMMIT")
	br := s.db.SendBatch(ctx, &b)
	out := make([]usage.Flushed, len(items))
	if _, err = br.Exec(); err == nil {
		_, err = br.Exec()
	}
	for i := 0; err == nil && i < len(items); i++ {
		var last *time.Time
		switch err = br.QueryRow().Scan(&last); {
		case err == nil:
			out[i].Known = true
			if last != nil {
				out[i].LastRefillAt = *last
			}
		case errors.Is(err, pgx.ErrNoRows):
			err = nil // already written (the token is there), or the row is gone
		}
	}
	if err == nil {
		_, err = br.Exec()
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("pgstore: writing usage: %w", err)
	}
	return out, nil
}

// markGatewayWrite tells the revocation triggers (triggers.sql) that the
// transaction's usage writes are the gateway's own, which change nothing
// a gateway caches or counts elsewhere.
const markGatewayWrite = "SELECT set_config('caddy_betterauth.writer', 'usage', true)"
