// Package shield limits failed authentications per client address, so
// that a client trying credentials is stopped before each try costs a
// database lookup. It counts with GCRA (one timestamp per address) in a
// bounded table: memory stays fixed however many addresses a flood uses.
package shield

import (
	"hash/maphash"
	"net/netip"
	"sync"
	"time"
)

// Options configure a Shield.
type Options struct {
	// Failures an address may have within Window before it is refused;
	// they are forgiven at a steady Window/Failures rate. Required.
	Failures int
	Window   time.Duration
	// MaxClients bounds the addresses remembered. Default: 100000.
	MaxClients int
	// Now is the clock. Default: time.Now.
	Now func() time.Time
}

// DefaultMaxClients is the default bound on remembered addresses.
const DefaultMaxClients = 100_000

const shards = 64

// Shield remembers failures by client: an IPv4 address, or an IPv6 /64.
type Shield struct {
	interval  time.Duration // forgiveness of one failure
	tolerance time.Duration // how far ahead an address's account may run
	perShard  int
	now       func() time.Time
	seed      maphash.Seed
	shards    [shards]shard
}

type shard struct {
	mu  sync.Mutex
	tat map[netip.Addr]time.Time // theoretical arrival time of the next failure
}

// New returns a Shield, or nil when opts limit nothing.
func New(opts Options) *Shield {
	if opts.Failures <= 0 || opts.Window <= 0 {
		return nil
	}
	if opts.MaxClients <= 0 {
		opts.MaxClients = DefaultMaxClients
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	interval := opts.Window / time.Duration(opts.Failures)
	s := &Shield{interval: interval, tolerance: opts.Window - interval, now: opts.Now,
		perShard: max(1, opts.MaxClients/shards), seed: maphash.MakeSeed()}
	for i := range s.shards {
		s.shards[i].tat = map[netip.Addr]time.Time{}
	}
	return s
}

// ClientKey is the account an address counts against: an IPv4 address
// (IPv4-mapped IPv6 included) as itself, an IPv6 address by its /64, which
// one client owns whole and can rotate through at will; zones are dropped.
func ClientKey(a netip.Addr) netip.Addr {
	a = a.Unmap().WithZone("")
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.Addr()
	}
	return a
}

func (s *Shield) shard(a netip.Addr) *shard {
	b := a.As16()
	return &s.shards[maphash.Bytes(s.seed, b[:])%shards]
}

// Blocked reports whether client has failed too often, and when it may try
// again. An address the front end cannot tell is never blocked here (the
// route's address rules decide about those).
func (s *Shield) Blocked(client netip.Addr) (retryAfter time.Duration, blocked bool) {
	if s == nil || !client.IsValid() {
		return 0, false
	}
	client = ClientKey(client)
	now := s.now()
	sh := s.shard(client)
	sh.mu.Lock()
	tat, ok := sh.tat[client]
	sh.mu.Unlock()
	if !ok {
		return 0, false
	}
	// One more failure would put the account past the window.
	if wait := tat.Sub(now) - s.tolerance; wait > 0 {
		return wait, true
	}
	return 0, false
}

// Failed counts one failed authentication from client.
func (s *Shield) Failed(client netip.Addr) {
	if s == nil || !client.IsValid() {
		return
	}
	client = ClientKey(client)
	now := s.now()
	sh := s.shard(client)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	tat, ok := sh.tat[client]
	if !ok && len(sh.tat) >= s.perShard {
		sh.evict(now, s.perShard)
	}
	if tat.Before(now) {
		tat = now
	}
	sh.tat[client] = tat.Add(s.interval)
}

// evict makes room: first every address whose failures are all forgiven,
// then, if the table is still full (a flood of distinct addresses), the
// one closest to being forgiven.
func (sh *shard) evict(now time.Time, limit int) {
	for a, tat := range sh.tat {
		if !tat.After(now) {
			delete(sh.tat, a)
		}
	}
	if len(sh.tat) < limit {
		return
	}
	var oldest netip.Addr
	var first time.Time
	for a, tat := range sh.tat {
		if !oldest.IsValid() || tat.Before(first) {
			oldest, first = a, tat
		}
	}
	delete(sh.tat, oldest)
}

// Len is how many addresses are remembered.
func (s *Shield) Len() int {
	if s == nil {
		return 0
	}
	n := 0
	for i := range s.shards {
		s.shards[i].mu.Lock()
		n += len(s.shards[i].tat)
		s.shards[i].mu.Unlock()
	}
	return n
}
