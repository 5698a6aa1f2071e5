package shield

import (
	"fmt"
	"net/netip"
	"testing"
	"time"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

var t0 = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

// An address is refused once it has failed Failures times within Window,
// and may try again as failures are forgiven, one per Window/Failures.
func TestFailuresWithinTheWindow(t *testing.T) {
	t.Parallel()
	c := &clock{t0}
	s := New(Options{Failures: 5, Window: time.Minute, Now: c.now})
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	for i := range 5 {
		if _, blocked := s.Blocked(a); blocked {
			t.Fatalf("blocked after %d failures", i)
		}
		s.Failed(a)
	}
	wait, blocked := s.Blocked(a)
	if !blocked || wait != 12*time.Second {
		t.Fatalf("after 5 failures: blocked %v, wait %v; want 12s (one failure forgiven)", blocked, wait)
	}
	if _, blocked := s.Blocked(b); blocked {
		t.Fatal("another address is blocked")
	}
	c.t = c.t.Add(wait)
	if _, blocked := s.Blocked(a); blocked {
		t.Fatal("still blocked once a failure was forgiven")
	}
	s.Failed(a)
	if _, blocked := s.Blocked(a); !blocked {
		t.Fatal("a failure at the limit did not block again")
	}
	c.t = c.t.Add(time.Hour)
	for range 4 {
		s.Failed(a)
	}
	if _, blocked := s.Blocked(a); blocked {
		t.Fatal("an hour later, 4 failures blocked")
	}
}

// A flood of distinct addresses keeps the table within its bound, and does
// not push out an address that is blocked.
func TestBoundedUnderAFlood(t *testing.T) {
	t.Parallel()
	c := &clock{t0}
	s := New(Options{Failures: 3, Window: time.Hour, MaxClients: 640, Now: c.now})
	guesser := netip.MustParseAddr("198.51.100.7")
	for range 3 {
		s.Failed(guesser)
	}
	for i := range 100_000 {
		s.Failed(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}))
	}
	if n := s.Len(); n > 640 {
		t.Fatalf("%d addresses remembered, bound 640", n)
	}
	if _, blocked := s.Blocked(guesser); !blocked {
		t.Fatal("the flood freed a blocked address")
	}
}

func TestNothingToLimit(t *testing.T) {
	t.Parallel()
	var s *Shield = New(Options{})
	if s != nil {
		t.Fatal("a shield without limits")
	}
	s.Failed(netip.MustParseAddr("192.0.2.1"))
	if _, blocked := s.Blocked(netip.MustParseAddr("192.0.2.1")); blocked {
		t.Fatal("a nil shield blocks")
	}
	real := New(Options{Failures: 1, Window: time.Minute})
	real.Failed(netip.Addr{})
	if _, blocked := real.Blocked(netip.Addr{}); blocked || real.Len() != 0 {
		t.Fatal("an unknown address was counted")
	}
}

func BenchmarkBlockedMiss(b *testing.B) {
	s := New(Options{Failures: 10, Window: time.Minute})
	for i := range 1000 {
		s.Failed(netip.MustParseAddr(fmt.Sprintf("10.0.%d.%d", i/256, i%256)))
	}
	a := netip.MustParseAddr("192.0.2.1")
	b.ReportAllocs()
	for b.Loop() {
		s.Blocked(a)
	}
}

// One client is one account however it spells or rotates its address: an
// IPv6 client owns at least a /64 and can use any address in it, an
// IPv4-mapped IPv6 address is its IPv4 address, and a zone is no part of
// who the client is.
func TestOneAccountPerClient(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		tries      []string
		sameClient bool
		other      string // not blocked by those tries
	}{
		{"an IPv6 client rotating through its /64",
			[]string{"2001:db8:1:2::1", "2001:db8:1:2::2", "2001:db8:1:2:ffff:ffff:ffff:ffff"}, true, "2001:db8:1:3::1"},
		{"IPv4 and IPv4-mapped IPv6", []string{"192.0.2.1", "::ffff:192.0.2.1", "192.0.2.1"}, true, "192.0.2.2"},
		{"zones", []string{"fe80::1%eth0", "fe80::1%eth1", "fe80::1"}, true, "fe80:0:0:1::1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := New(Options{Failures: len(tc.tries), Window: time.Hour, Now: (&clock{t0}).now})
			for _, a := range tc.tries {
				s.Failed(netip.MustParseAddr(a))
			}
			for _, a := range tc.tries {
				if _, blocked := s.Blocked(netip.MustParseAddr(a)); !blocked {
					t.Errorf("%s is not blocked after %d failures of its client", a, len(tc.tries))
				}
			}
			if _, blocked := s.Blocked(netip.MustParseAddr(tc.other)); blocked {
				t.Errorf("%s, another client, is blocked", tc.other)
			}
		})
	}
}
