package usage

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"golang.org/x/sync/singleflight"

	"github.com/caddy-betterauth/caddy-betterauth/betterauth"
	"github.com/caddy-betterauth/caddy-betterauth/internal/throttle"
)

var (
	//go:embed use.lua
	useLua    string
	useScript = redis.NewScript(useLua)
	//go:embed flush.lua
	flushLua    string
	flushScript = redis.NewScript(flushLua)
	//go:embed ack.lua
	ackLua    string
	ackScript = redis.NewScript(ackLua)
)

// Mirror is the database behind a Redis meter: where a key's hash is seeded
// from, and where its uses are written back.
type Mirror interface {
	// ReadUsage reads a row's usage columns; found is false when no row
	// has the id.
	ReadUsage(ctx context.Context, id string) (row Row, found bool, err error)
	// FlushUsage writes each item's changes to its row, once: a write
	// whose token the row already carries in updatedAt changes nothing.
	// All or none: on an error nothing was written. It returns, for each
	// item, the row's lastRefillAt after the write, when it knows it.
	FlushUsage(ctx context.Context, items []FlushItem) ([]Flushed, error)
}

// FlushItem is one key's changes to write.
type FlushItem struct {
	ID string
	Flush
}

// Flushed is what a row says after its changes were written:
// LastRefillAt (zero for NULL), when Known.
type Flushed struct {
	LastRefillAt time.Time
	Known        bool
}

// Flush is what uses counted in Redis change on a row.
type Flush struct {
	// Decrements of remaining, after the refill when there is one.
	Decrements int64
	// Refill, when set, is a refill at RefillAt to RemainingAfter,
	// compare-and-swapped on the row's lastRefillAt still being
	// RefilledFrom (zero for NULL); if another writer refilled first, it
	// counts as one more decrement.
	Refill         bool
	RefillAt       time.Time
	RefilledFrom   time.Time
	RemainingAfter int64
	// RequestCount and LastRequest, when set, replace the row's.
	RequestCount    int64
	HasRequestCount bool
	LastRequest     time.Time
	// Token numbers the key's writes: the database applies a write only
	// if its token is above the last it recorded for the key, and records
	// it in the same transaction, so a write taken over after a lost
	// acknowledgement is applied once.
	Token int64
	// UpdatedAt is the row's new updatedAt: the last use written.
	UpdatedAt time.Time
}

// RedisOptions configure a Redis meter.
type RedisOptions struct {
	Client redis.UniversalClient
	Mirror Mirror
	// Rules gives the rules of a key's configuration.
	Rules func(configID string) Rules
	// Prefix returns the prefix of the meter's keys, the same on every
	// gateway counting the same database.
	Prefix func(ctx context.Context) (string, error)
	// Timeout bounds each use, the row's read included. Default: 3s.
	Timeout time.Duration
	// TTL is how long a key's hash lives without use. Default: 24h.
	TTL time.Duration
	// Interval is how often pending uses are written to the database.
	// Default: 1s.
	Interval time.Duration
	// Lease is how long a gateway may take to write a key's uses before
	// another takes them over. Default: 30s.
	Lease  time.Duration
	Logger *zap.Logger
}

// Redis is a betterauth.Meter that decides each use atomically in Redis
// (one script call on a hash per key, seeded from the row, clocked by
// Redis), shared by every gateway, and writes the uses back to the rows
// behind, from Redis: what a gateway counted survives its crash, and any
// gateway writes it.
type Redis struct {
	opts    RedisOptions
	failed  throttle.Log
	mu      sync.Mutex         // serialises Flush
	reading singleflight.Group // one read of a row at a time, for the uses that need it
}

// NewRedis returns a Redis meter.
func NewRedis(opts RedisOptions) *Redis {
	if opts.TTL <= 0 {
		opts.TTL = 24 * time.Hour
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 3 * time.Second
	}
	if opts.Interval <= 0 {
		opts.Interval = time.Second
	}
	if opts.Lease <= 0 {
		opts.Lease = 30 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	return &Redis{opts: opts}
}

func (m *Redis) keys(ctx context.Context, id string) ([]string, error) {
	p, err := m.opts.Prefix(ctx)
	if err != nil {
		return nil, err
	}
	// One slot in a Redis Cluster: the script touches them all.
	return []string{p + "{usage}:key:" + id, p + "{usage}:dirty", p + "{usage}:gen"}, nil
}

// Use implements betterauth.Meter: one script call, and on a key's first
// use (or after its row changed outside the gateways) one database read
// and a second call.
func (m *Redis) Use(ctx context.Context, k *betterauth.APIKey) (betterauth.Usage, error) {
	ctx, cancel := context.WithTimeout(ctx, m.opts.Timeout)
	defer cancel()
	keys, err := m.keys(ctx, k.ID)
	if err != nil {
		return betterauth.Usage{}, err
	}
	rules := m.opts.Rules(k.ConfigID)
	args := []any{int(rules.Family), flag(rules.RateLimitOff), "0", k.ID, m.opts.TTL.Milliseconds()}
	res, err := useScript.Run(ctx, m.opts.Client, keys, args...).Slice()
	if err != nil {
		return betterauth.Usage{}, fmt.Errorf("usage: redis: %w", err)
	}
	// Seed the key's hash from its row: on its first use, after a change
	// to the row was announced, or when the row read lacks a write of uses
	// that reached the database since (acknowledged between the read and
	// the script): read again, twice at most, then take it (a token table
	// restored from an older backup would otherwise never agree).
	for try := 0; len(res) == 3; try++ {
		gen, reseeds := res[1], res[2]
		// Uses that saw the same counters share one read, begun after the
		// first of them saw them; the read is not the first caller's to
		// cancel.
		flight := fmt.Sprint(k.ID, "\x00", gen, "\x00", reseeds)
		v, err, _ := m.reading.Do(flight, func() (any, error) {
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), m.opts.Timeout)
			defer cancel()
			row, found, err := m.opts.Mirror.ReadUsage(rctx, k.ID)
			return readRow{row, found}, err
		})
		if err != nil {
			return betterauth.Usage{}, err
		}
		row, found := v.(readRow).row, v.(readRow).found
		if !found {
			return betterauth.Usage{Reason: betterauth.InvalidAPIKey}, nil
		}
		args[2] = "1"
		if try == 2 {
			args[2] = "2"
		}
		seeded := append(append(args[:5:5], seedArgs(row)...), gen, reseeds)
		if res, err = useScript.Run(ctx, m.opts.Client, keys, seeded...).Slice(); err != nil {
			return betterauth.Usage{}, fmt.Errorf("usage: redis: %w", err)
		}
	}
	return decodeUse(res)
}

type readRow struct {
	row   Row
	found bool
}

func flag(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

// seedArgs are a row's values as use.lua reads them.
func seedArgs(r Row) []any {
	opt := func(ok bool, v int64) string {
		if !ok {
			return ""
		}
		return strconv.FormatInt(v, 10)
	}
	date := func(t time.Time) string { return opt(!t.IsZero(), t.UnixMilli()) }
	return []any{
		opt(r.HasRemaining, r.Remaining), strconv.FormatInt(r.RefillInterval, 10), opt(r.HasRefillAmount, r.RefillAmount),
		date(r.LastRefillAt), date(r.CreatedAt), flag(r.RateLimitOff), opt(r.HasWindow, r.Window), opt(r.HasMax, r.Max),
		strconv.FormatInt(r.RequestCount, 10), date(r.LastRequest), strconv.FormatInt(r.Applied, 10),
	}
}

var codes = [...]betterauth.Reason{betterauth.Allowed, betterauth.UsageExceeded, betterauth.RateLimited, betterauth.RateLimitedUnauthorized}

func decodeUse(res []any) (betterauth.Usage, error) {
	var v [11]int64
	if len(res) != len(v) {
		return betterauth.Usage{}, fmt.Errorf("usage: redis: unexpected answer %v", res)
	}
	for i, x := range res {
		n, ok := x.(int64)
		if !ok {
			return betterauth.Usage{}, fmt.Errorf("usage: redis: unexpected answer %v", res)
		}
		v[i] = n
	}
	if v[0] < 0 || int(v[0]) >= len(codes) {
		return betterauth.Usage{}, fmt.Errorf("usage: redis: unexpected answer %v", res)
	}
	ms := func(n int64) time.Duration { return time.Duration(n) * time.Millisecond }
	return betterauth.Usage{
		Reason: codes[v[0]], HasRemaining: v[1] == 1, Remaining: v[2], RetryAfter: ms(v[3]),
		Limit: v[4], Window: ms(v[5]), Left: v[6], Reset: ms(v[7]),
		RefillAmount: v[8], RefillInterval: ms(v[9]), RefillIn: ms(v[10]),
	}, nil
}

// Run writes pending uses to the database every Interval until ctx ends.
func (m *Redis) Run(ctx context.Context) {
	tick := time.NewTicker(m.opts.Interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			if _, err := m.Flush(ctx); err != nil && ctx.Err() == nil {
				if total, ok := m.failed.Allow(); ok {
					m.opts.Logger.Warn("writing API-key uses to the database failed; they stay pending in Redis and are tried again",
						zap.Error(err), zap.Uint64("failures", total))
				}
			}
		}
	}
}

// Flush writes the pending uses of every key due to be written (of this
// gateway and of others), and returns how many keys it wrote. Each page of
// up to 256 keys costs three round trips to Redis (take, in a pipeline;
// acknowledge) and one to the database (one transaction); a page the
// database refuses is written key by key, so that one bad row holds back
// only itself.
func (m *Redis) Flush(ctx context.Context) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	keys, err := m.keys(ctx, "")
	if err != nil {
		return 0, err
	}
	n, loaded := 0, false
	for {
		ids, err := m.opts.Client.ZRangeByScore(ctx, keys[1], &redis.ZRangeBy{
			Min: "-inf", Max: strconv.FormatInt(time.Now().UnixMilli(), 10), Count: flushPage,
		}).Result()
		if err != nil {
			return n, fmt.Errorf("usage: redis: %w", err)
		}
		if len(ids) > 0 && !loaded {
			// The pipelines call the scripts by hash: make sure Redis has
			// them, once per round that has something to write.
			for _, sc := range []*redis.Script{flushScript, ackScript} {
				if err := sc.Load(ctx, m.opts.Client).Err(); err != nil {
					return n, fmt.Errorf("usage: redis: %w", err)
				}
			}
			loaded = true
		}
		wrote, err := m.flushPage(ctx, ids)
		n += wrote
		if err != nil || len(ids) < flushPage {
			return n, err
		}
	}
}

const flushPage = 256

// flushPage takes, writes and acknowledges the pending uses of ids.
func (m *Redis) flushPage(ctx context.Context, ids []string) (int, error) {
	if len(ids) == 0 {
		return 0, nil
	}
	p, err := m.opts.Prefix(ctx)
	if err != nil {
		return 0, err
	}
	hashKey := func(id string) string { return p + "{usage}:key:" + id }
	dirty := p + "{usage}:dirty"
	pipe := m.opts.Client.Pipeline()
	takes := make([]*redis.Cmd, len(ids))
	for i, id := range ids {
		takes[i] = pipe.EvalSha(ctx, flushScript.Hash(), []string{hashKey(id), dirty}, id, m.opts.Lease.Milliseconds())
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		// Per command below: one failed take must not hide the others.
		m.opts.Logger.Debug("taking pending uses", zap.Error(err))
	}
	var items []FlushItem
	var tokens []string
	var errs []error
	for i, cmd := range takes {
		res, err := cmd.Slice()
		if err != nil {
			errs = append(errs, fmt.Errorf("usage: redis: %w", err))
			continue
		}
		if len(res) != 9 {
			continue // nothing to write, or another gateway is writing it
		}
		var s [9]string
		for j, x := range res {
			s[j], _ = x.(string)
			if n, ok := x.(int64); ok {
				s[j] = strconv.FormatInt(n, 10)
			}
		}
		f, err := parseFlush(s[1:])
		if err != nil {
			// Not what flush.lua writes: someone else's. Left to expire.
			errs = append(errs, fmt.Errorf("usage: redis: key %s: %w", ids[i], err))
			continue
		}
		items = append(items, FlushItem{ID: ids[i], Flush: f})
		tokens = append(tokens, s[7])
	}
	if len(items) == 0 {
		return 0, errors.Join(errs...)
	}
	done, err := m.opts.Mirror.FlushUsage(ctx, items)
	if err != nil && len(items) > 1 {
		// One row may be what the database refuses: write them one by one.
		done = make([]Flushed, len(items))
		ok := make([]bool, len(items))
		for i := range items {
			one, err := m.opts.Mirror.FlushUsage(ctx, items[i:i+1])
			if err != nil {
				errs = append(errs, err)
				continue
			}
			done[i], ok[i] = one[0], true
		}
		var keep []int
		for i := range items {
			if ok[i] {
				keep = append(keep, i)
			}
		}
		items, tokens, done = pick(items, keep), pick(tokens, keep), pick(done, keep)
	} else if err != nil {
		return 0, errors.Join(append(errs, err)...)
	}
	pipe = m.opts.Client.Pipeline()
	for i, it := range items {
		last := "?"
		if done[i].Known {
			last = ""
			if !done[i].LastRefillAt.IsZero() {
				last = strconv.FormatInt(done[i].LastRefillAt.UnixMilli(), 10)
			}
		}
		pipe.EvalSha(ctx, ackScript.Hash(), []string{hashKey(it.ID), dirty}, it.ID, tokens[i], last)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		// Unacknowledged writes are taken again after their lease, with
		// their tokens: the database applies them once.
		errs = append(errs, fmt.Errorf("usage: redis: acknowledging: %w", err))
	}
	return len(items), errors.Join(errs...)
}

func pick[T any](xs []T, idx []int) []T {
	out := make([]T, len(idx))
	for i, j := range idx {
		out[i] = xs[j]
	}
	return out
}

// parseFlush reads flush.lua's answer: decrements, refill time, refilled
// from, remaining after, requestCount, lastRequest, token, updatedAt.
func parseFlush(s []string) (Flush, error) {
	var f Flush
	num := func(v string) (int64, bool, error) {
		if v == "" {
			return 0, false, nil
		}
		n, err := strconv.ParseInt(v, 10, 64)
		return n, err == nil, err
	}
	var err error
	var ok bool
	var n int64
	if f.Decrements, _, err = num(s[0]); err != nil || f.Decrements < 0 {
		return f, fmt.Errorf("decrements %q", s[0])
	}
	if n, f.Refill, err = num(s[1]); err != nil {
		return f, fmt.Errorf("refill %q", s[1])
	}
	f.RefillAt = time.UnixMilli(n).UTC()
	if n, ok, err = num(s[2]); err != nil {
		return f, fmt.Errorf("refilled from %q", s[2])
	} else if ok {
		f.RefilledFrom = time.UnixMilli(n).UTC()
	}
	if f.RemainingAfter, _, err = num(s[3]); err != nil {
		return f, fmt.Errorf("remaining %q", s[3])
	}
	if f.RequestCount, f.HasRequestCount, err = num(s[4]); err != nil {
		return f, fmt.Errorf("requestCount %q", s[4])
	}
	if n, ok, err = num(s[5]); err != nil {
		return f, fmt.Errorf("lastRequest %q", s[5])
	} else if ok {
		f.LastRequest = time.UnixMilli(n).UTC()
	}
	if f.Token, ok, err = num(s[6]); err != nil || !ok || f.Token <= 0 {
		return f, fmt.Errorf("token %q", s[6])
	}
	if n, ok, err = num(s[7]); err != nil || !ok {
		return f, fmt.Errorf("updatedAt %q", s[7])
	}
	f.UpdatedAt = time.UnixMilli(n).UTC()
	return f, nil
}

// Reseed marks a key's hash to be read again from its row at the next use
// (its row changed outside the gateways), keeping what is pending.
func (m *Redis) Reseed(ctx context.Context, id string) error {
	keys, err := m.keys(ctx, id)
	if err != nil {
		return err
	}
	// HSET on a missing hash would create a hash without a row: only mark
	// one that exists.
	return reseedScript.Run(ctx, m.opts.Client, keys[:1]).Err()
}

// ReseedAll makes every key's hash be read from its row again at its next
// use, keeping what is pending: for when the gateways may have missed
// changes to rows (a revocation listener connected again).
func (m *Redis) ReseedAll(ctx context.Context) error {
	keys, err := m.keys(ctx, "")
	if err != nil {
		return err
	}
	return m.opts.Client.Incr(ctx, keys[2]).Err()
}

// reseedScript counts a change to the row on a hash that exists (the
// hash is read from its row again while its count differs from the one it
// was seeded at); HINCRBY on a missing hash would create one without a
// row.
var reseedScript = redis.NewScript(`if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HINCRBY', KEYS[1], 'rs', 1) end return 0`)
