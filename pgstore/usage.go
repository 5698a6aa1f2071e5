package pgstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/zap"

	"github.com/caddy-betterauth/caddy-betterauth/schema"
	"github.com/caddy-betterauth/caddy-betterauth/usage"
)

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

// ClaimUsage implements usage.Claimer in one statement, one round trip
// (schema.UsageSQL.Claim): the row is locked only while the statement runs,
// and the app's own guarded updates wait for it, then see its result. A
// statement that never reached the server (its connection found dead) is
// sent once more on a new connection; one that may have, never.
func (s *Store) ClaimUsage(ctx context.Context, id string, rules usage.Rules, clock func() time.Time) (usage.Row, time.Time, bool, error) {
	sqls, err := s.usageStatements(ctx)
	if err != nil {
		return usage.Row{}, time.Time{}, false, err
	}
	now := time.UnixMilli(clock().UnixMilli()).UTC()
	claim := func() (usage.Row, bool, error) {
		rows, err := s.db.Query(ctx, sqls.Claim, id, now.UnixMilli(), rules.RateLimitOff, int(rules.Family), now, now, now)
		if err != nil {
			return usage.Row{}, false, err
		}
		vals := make([]any, len(schema.UsageFields)+1)
		found, err := scanOne(rows, vals)
		if err != nil || !found {
			return usage.Row{}, false, err
		}
		row, err := decodeClaimed(vals[:len(schema.UsageFields)])
		return row, err == nil, err
	}
	row, found, err := claim()
	if err != nil && ctx.Err() == nil && pgconn.SafeToRetry(err) {
		if r, ok := s.db.(resetter); ok {
			r.Reset()
		}
		s.logger.Warn("the database connection was lost before counting a use; counting it on a new connection", zap.Error(err))
		row, found, err = claim()
	}
	if err != nil {
		return usage.Row{}, now, false, fmt.Errorf("pgstore: counting a use: %w", err)
	}
	return row, now, found, nil
}

// decodeClaimed reads the row Claim returns: UsageFields, with dates as
// epoch milliseconds.
func decodeClaimed(v []any) (usage.Row, error) {
	for _, i := range []int{3, schema.CreatedAtIndex, 9} { // lastRefillAt, createdAt, lastRequest
		switch ms := v[i].(type) {
		case int64:
			v[i] = time.UnixMilli(ms).UTC()
		case nil:
		default:
			return usage.Row{}, fmt.Errorf("a date came back as %T", v[i])
		}
	}
	return schema.DecodeUsage(v)
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

// ReadUsage implements usage.Mirror: the row's usage columns, unlocked,
// and the last write of uses it holds (schema.UsageWritesTable).
func (s *Store) ReadUsage(ctx context.Context, id string) (usage.Row, bool, error) {
	sqls, err := s.usageStatements(ctx)
	if err != nil {
		return usage.Row{}, false, err
	}
	if err := s.usageWritesTable(ctx); err != nil {
		return usage.Row{}, false, err
	}
	return retryRead3(ctx, s, func() (usage.Row, bool, error) {
		rows, err := s.db.Query(ctx, sqls.ReadApplied, id)
		if err != nil {
			return usage.Row{}, false, fmt.Errorf("pgstore: reading usage: %w", err)
		}
		vals := make([]any, len(schema.UsageFields)+1)
		found, err := scanOne(rows, vals)
		if err != nil || !found {
			return usage.Row{}, false, err
		}
		row, err := schema.DecodeUsage(vals[:len(schema.UsageFields)])
		if token, ok := vals[len(schema.UsageFields)].(int64); ok {
			row.Applied = token
		}
		return row, err == nil, err
	})
}

// usageWritesTable makes sure schema.UsageWritesTable exists, once (a
// failure is tried again at the next use).
func (s *Store) usageWritesTable(ctx context.Context) error {
	if s.writesReady.Load() {
		return nil
	}
	s.writesMu.Lock()
	defer s.writesMu.Unlock()
	if s.writesReady.Load() {
		return nil
	}
	exists := func() (bool, error) {
		var ok bool
		rows, err := s.db.Query(ctx, `SELECT to_regclass('`+schema.UsageWritesTable+`') IS NOT NULL`)
		if err == nil {
			_, err = pgx.ForEachRow(rows, []any{&ok}, func() error { return nil })
		}
		return ok, err
	}
	ok, err := exists()
	if err != nil {
		return fmt.Errorf("pgstore: looking for %s: %w", schema.UsageWritesTable, err)
	}
	if !ok {
		// Two statements: the simple protocol, with no parameters.
		rows, err := s.db.Query(ctx, schema.UsageWritesDDL, pgx.QueryExecModeSimpleProtocol)
		if err == nil {
			rows.Close()
			err = rows.Err()
		}
		// Another gateway may have created it at the same moment (IF NOT
		// EXISTS does not guard against that): what matters is that it
		// is there.
		if ok, _ := exists(); err != nil && !ok {
			return fmt.Errorf("pgstore: usage redis records the writes of uses in %s, and creating it failed "+
				"(grant the gateway's role CREATE on the database, or run as an owner: %s): %w",
				schema.UsageWritesTable, strings.ReplaceAll(schema.UsageWritesDDL, "\n", " "), err)
		}
	}
	s.writesReady.Store(true)
	return nil
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
	if err := s.usageWritesTable(ctx); err != nil {
		return nil, err
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
			count, optTime(f.LastRequest), f.UpdatedAt.UTC(), it.ID, f.Token)
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
			err = nil // written already (its token is recorded), or the row is gone
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
