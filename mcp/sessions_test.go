package mcp

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

func TestSessionsBindToTheirPrincipal(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_700_000_000, 0)
	s := newSessions(time.Hour, 3, func() time.Time { return now })
	alice, bob := principal{'u', "alice"}, principal{'u', "bob"}
	s.bind("s1", alice)
	if !s.check("s1", alice, false) || s.check("s1", bob, false) || s.check("s1", principal{'o', "alice"}, false) {
		t.Fatal("s1 is alice's alone")
	}
	if s.check("unknown", alice, false) {
		t.Fatal("strict: an unknown session passed")
	}
	// First use binds an unknown session to whoever comes first.
	if !s.check("s2", bob, true) || s.check("s2", alice, true) || !s.check("s2", bob, false) {
		t.Fatal("first use")
	}
	// Unused for longer than the TTL: forgotten. Used: kept.
	now = now.Add(50 * time.Minute)
	s.check("s1", alice, false)
	now = now.Add(50 * time.Minute)
	if !s.check("s1", alice, false) || s.check("s2", bob, false) {
		t.Fatal("sliding TTL")
	}
	// Bounded: the least recently used goes.
	s.bind("s3", alice)
	s.bind("s4", alice)
	s.bind("s5", alice)
	if s.len() != 3 || s.check("s1", alice, false) {
		t.Fatalf("bound: %d sessions, s1 kept", s.len())
	}
	s.forget("s5")
	if s.check("s5", alice, false) {
		t.Fatal("forgotten")
	}
}

// Two principals racing to use an unknown session first: one wins, and
// only it.
func TestSessionsFirstUseRace(t *testing.T) {
	t.Parallel()
	s := newSessions(time.Hour, 100, time.Now)
	for round := range 50 {
		id := fmt.Sprint("s", round)
		var wg sync.WaitGroup
		var won [8]bool
		for i := range won {
			wg.Go(func() { won[i] = s.check(id, principal{'u', fmt.Sprint(i)}, true) })
		}
		wg.Wait()
		n := 0
		for _, w := range won {
			if w {
				n++
			}
		}
		if n != 1 {
			t.Fatalf("round %d: %d principals got the session", round, n)
		}
	}
}
