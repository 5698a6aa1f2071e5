package usage

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/caddy-betterauth/caddy-betterauth/betterauth"
)

// Claimer is a database that can count a use on an apikey row
// atomically: ClaimUsage locks the row (or the database), reads its usage
// columns, writes what rules.Plan(row, now) says to write, and commits; it
// returns the row as it was and the now it used (from clock, read as late
// as the database allows), so that the caller's Plan tells the answer.
// found is false when no row has the id.
type Claimer interface {
	ClaimUsage(ctx context.Context, id string, rules Rules, clock func() time.Time) (row Row, now time.Time, found bool, err error)
}

// Database is a betterauth.Meter that counts on the apikey rows
// themselves, in one transaction per use: exact beside the app's own
// verifyApiKey and any number of gateways.
//
// Uses of one key queue in the gateway, not on database connections: a
// row locked for long (an app's transaction, a migration) or a very hot
// key holds at most one connection of the pool, and every use is bounded
// by the timeout, so other keys keep theirs.
type Database struct {
	db      Claimer
	rules   func(configID string) Rules
	timeout time.Duration
	now     func() time.Time
	mu      sync.Mutex
	lanes   map[string]*lane // keys with uses under way: one claim at a time each
}

// lane queues the uses of one key.
type lane struct {
	turn chan struct{} // holds a token while a use is claimed
	refs int           // uses queued or claiming; the lane goes at 0
}

// NewDatabase returns a meter over db; rules gives the rules of a key's
// configuration (configId, "" for the default), timeout bounds each use,
// waiting included (default 3s).
func NewDatabase(db Claimer, rules func(configID string) Rules, timeout time.Duration) *Database {
	if timeout <= 0 {
		timeout = 3 * time.Second
	}
	return &Database{db: db, rules: rules, timeout: timeout, now: time.Now, lanes: map[string]*lane{}}
}

// Use implements betterauth.Meter.
func (d *Database) Use(ctx context.Context, k *betterauth.APIKey) (betterauth.Usage, error) {
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	ln := d.enter(k.ID)
	defer d.leave(k.ID, ln)
	select {
	case ln.turn <- struct{}{}:
		defer func() { <-ln.turn }()
	case <-ctx.Done():
		return betterauth.Usage{}, fmt.Errorf("usage: counting a use of key %s: %w", k.ID, context.Cause(ctx))
	}
	rules := d.rules(k.ConfigID)
	row, now, found, err := d.db.ClaimUsage(ctx, k.ID, rules, d.now)
	switch {
	case err != nil:
		return betterauth.Usage{}, err
	case !found:
		// Deleted since it was cached: Better-Auth's verify finds no row.
		return betterauth.Usage{Reason: betterauth.InvalidAPIKey}, nil
	}
	u, _ := rules.Plan(row, now)
	return u, nil
}

// Values returns the values of the columns w sets, in the order of
// schema.UsageWrites, with date turning a time into what the database
// stores.
func (w Write) Values(date func(time.Time) any) []any {
	vals := make([]any, 0, 6)
	if w.Set&ColRemaining != 0 {
		vals = append(vals, w.Remaining)
	}
	if w.Set&ColLastRefillAt != 0 {
		vals = append(vals, date(w.LastRefillAt))
	}
	if w.Set&ColRequestCount != 0 {
		vals = append(vals, w.RequestCount)
	}
	if w.Set&ColLastRequest != 0 {
		vals = append(vals, date(w.LastRequest))
	}
	if w.Set&ColUpdatedAt != 0 {
		vals = append(vals, date(w.UpdatedAt))
	}
	return vals
}

// enter joins the lane of key id, making it if it is the only use.
func (d *Database) enter(id string) *lane {
	d.mu.Lock()
	defer d.mu.Unlock()
	ln := d.lanes[id]
	if ln == nil {
		ln = &lane{turn: make(chan struct{}, 1)}
		d.lanes[id] = ln
	}
	ln.refs++
	return ln
}

// leave quits a lane, dropping it with its last use: the map holds only
// keys with uses under way.
func (d *Database) leave(id string, ln *lane) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if ln.refs--; ln.refs == 0 {
		delete(d.lanes, id)
	}
}
