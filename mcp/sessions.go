package mcp

import (
	"container/list"
	"crypto/sha256"
	"fmt"
	"sync"
	"time"
)

// SessionMode says how sessions (Mcp-Session-Id, revisions 2025-03-26 to
// 2025-11-25) are bound to the principal that opened them.
type SessionMode uint8

// Session modes.
const (
	// SessionsStrict binds each session the upstream opens to its
	// principal, and answers 404 to a request with a session id the
	// gateway did not see opened, or saw opened by another principal: as
	// for a session that ended, so the client opens a new one.
	SessionsStrict SessionMode = iota
	// SessionsFirstUse binds a session id the gateway does not know to the
	// first principal that uses it (for replicas that do not see every
	// initialize); a known one as strict does.
	SessionsFirstUse
	// SessionsOff leaves sessions alone.
	SessionsOff
)

// ParseSessionMode reads "strict", "first_use" or "off" ("" is strict).
func ParseSessionMode(s string) (SessionMode, error) {
	switch s {
	case "", "strict":
		return SessionsStrict, nil
	case "first_use":
		return SessionsFirstUse, nil
	case "off":
		return SessionsOff, nil
	}
	return 0, fmt.Errorf("bind_sessions is strict, first_use or off, not %q", s)
}

// sessions remembers which principal opened each session, in a bounded
// table with a sliding TTL. Session ids are kept as SHA-256 digests: a
// session id is a bearer of the session, never kept in memory.
type sessions struct {
	mu    sync.Mutex
	byID  map[[32]byte]*list.Element
	order *list.List // of *binding, most recently used first
	ttl   time.Duration
	max   int
	now   func() time.Time
}

type binding struct {
	id   [32]byte
	who  principal
	seen time.Time
}

func newSessions(ttl time.Duration, max int, now func() time.Time) *sessions {
	return &sessions{byID: map[[32]byte]*list.Element{}, order: list.New(), ttl: ttl, max: max, now: now}
}

// bind records that who opened the session id.
func (s *sessions) bind(id string, who principal) {
	key := sha256.Sum256([]byte(id))
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.byID[key]; ok {
		b := e.Value.(*binding)
		b.who, b.seen = who, now
		s.order.MoveToFront(e)
		return
	}
	s.insert(key, who, now)
}

// check reports whether who may use the session id: it is bound to who, or
// (with firstUse) unknown, and then bound to who from now on.
func (s *sessions) check(id string, who principal, firstUse bool) bool {
	key := sha256.Sum256([]byte(id))
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.byID[key]
	if ok && now.Sub(e.Value.(*binding).seen) > s.ttl {
		s.drop(e)
		ok = false
	}
	if !ok {
		if firstUse {
			s.insert(key, who, now)
		}
		return firstUse
	}
	b := e.Value.(*binding)
	if b.who != who {
		return false
	}
	b.seen = now
	s.order.MoveToFront(e)
	return true
}

// insert adds a binding, dropping the least recently used past the bound.
func (s *sessions) insert(key [32]byte, who principal, now time.Time) {
	s.byID[key] = s.order.PushFront(&binding{id: key, who: who, seen: now})
	for s.order.Len() > s.max {
		s.drop(s.order.Back())
	}
}

// forget drops a session that ended.
func (s *sessions) forget(id string) {
	key := sha256.Sum256([]byte(id))
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.byID[key]; ok {
		s.drop(e)
	}
}

func (s *sessions) drop(e *list.Element) {
	delete(s.byID, e.Value.(*binding).id)
	s.order.Remove(e)
}

// len is how many sessions are remembered.
func (s *sessions) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.order.Len()
}
