package cache

import (
	"context"
	"testing"
	"time"

	"github.com/caddy-betterauth/caddy-betterauth/betterauth"
)

// byKind is a store with one user's key and session.
type twoRecords struct{ key, session betterauth.Record }

func (s twoRecords) Lookup(_ context.Context, l betterauth.Lookup) (betterauth.Record, error) {
	if l.Kind == betterauth.KindAPIKey {
		return s.key, nil
	}
	return s.session, nil
}

func TestInvalidateDropsOnlyWhatItNames(t *testing.T) {
	t.Parallel()
	u := &betterauth.User{ID: "u1"}
	other := &betterauth.User{ID: "u2"}
	inner := twoRecords{
		key:     betterauth.Record{APIKey: &betterauth.APIKey{ID: "k1", Enabled: true, User: u}},
		session: betterauth.Record{Session: &betterauth.Session{ID: "s1", ExpiresAt: t0.Add(time.Hour), User: u}},
	}
	ctx := context.Background()
	for _, tc := range []struct {
		target Target
		id     string
		drops  int
	}{
		{TargetAPIKey, "k1", 1}, {TargetSession, "s1", 1}, {TargetUser, "u1", 2},
		{TargetAPIKey, "s1", 0}, {TargetUser, other.ID, 0}, {TargetSession, "k1", 0},
	} {
		s := New(inner, Options{Now: (&clock{t0}).now})
		s.Lookup(ctx, betterauth.NewLookup(betterauth.KindAPIKey, "key"))
		s.Lookup(ctx, betterauth.NewLookup(betterauth.KindSession, "token"))
		if n, _ := s.Revoke(ctx, Revocation{Target: tc.target, ID: tc.id}); n != tc.drops {
			t.Errorf("Invalidate(%d, %s) dropped %d, want %d", tc.target, tc.id, n, tc.drops)
		}
		if pos, _ := s.Len(); pos != 2-tc.drops {
			t.Errorf("Invalidate(%d, %s) left %d entries", tc.target, tc.id, pos)
		}
	}
}

// The race: a lookup reads the database, a revocation lands, then the
// lookup finishes. The record it read must not be cached.
func TestInvalidationDuringALookupIsNotUndone(t *testing.T) {
	t.Parallel()
	inner := gated(keyRecord(time.Time{}))
	s := New(inner, Options{})
	ctx := context.Background()
	done := make(chan betterauth.Record)
	go func() {
		rec, _ := s.Lookup(ctx, lookup("k"))
		done <- rec
	}()
	<-inner.entered // the lookup has read the (soon revoked) row
	s.Revoke(ctx, Revocation{Target: TargetAPIKey, ID: "k1"})
	close(inner.gate)
	if rec := <-done; rec.APIKey == nil {
		t.Fatal("the lookup in flight got nothing")
	}
	if pos, _ := s.Len(); pos != 0 {
		t.Fatal("the revoked record was cached after the revocation")
	}
	s.Lookup(ctx, lookup("k"))
	if n := inner.calls.Load(); n != 2 {
		t.Fatalf("database calls %d, want 2: the next lookup must ask again", n)
	}
}

func TestPurgeDropsEverything(t *testing.T) {
	t.Parallel()
	inner := &countingStore{rec: keyRecord(time.Time{})}
	s := New(inner, Options{})
	ctx := context.Background()
	s.Lookup(ctx, lookup("k"))
	inner.rec = betterauth.Record{}
	s.Lookup(ctx, lookup("unknown"))
	s.Purge(ctx)
	if pos, neg := s.Len(); pos != 0 || neg != 0 {
		t.Fatalf("after Purge: %d positive, %d negative", pos, neg)
	}
}

// A revocation seen by one gateway makes the shared entries stale for all.
func TestInvalidationMakesSharedEntriesStale(t *testing.T) {
	t.Parallel()
	remote := newFakeRemote()
	ctx := context.Background()
	clk := &clock{t0}
	a := New(&countingStore{rec: keyRecord(time.Time{})}, sharedOpts(remote, Options{Now: clk.now}))
	innerB := &countingStore{rec: keyRecord(time.Time{})}
	b := New(innerB, sharedOpts(remote, Options{Now: clk.now}))
	c := New(&countingStore{}, sharedOpts(remote, Options{Now: clk.now}))
	clk.advance(ClockSkew)
	a.Lookup(ctx, lookup("k"))
	<-remote.sets
	a.Revoke(ctx, Revocation{Target: TargetAPIKey, ID: "k1"})
	b.Lookup(ctx, lookup("k"))
	if innerB.calls.Load() != 1 {
		t.Fatal("gateway B used a shared entry written before the revocation")
	}
	<-remote.sets // B shares what it read, under the new epoch
	if rec, _ := c.Lookup(ctx, lookup("k")); rec.APIKey == nil {
		t.Fatal("gateway C did not get B's fresh entry")
	}
}

func TestForgetDropsOneCredentialInEveryKind(t *testing.T) {
	t.Parallel()
	inner := &countingStore{rec: keyRecord(time.Time{})}
	s := New(inner, Options{})
	ctx := context.Background()
	for _, m := range []betterauth.Kind{betterauth.KindAPIKey, betterauth.KindEither} {
		s.Lookup(ctx, betterauth.NewLookup(m, "k"))
		s.Lookup(ctx, betterauth.NewLookup(m, "other"))
	}
	if n, _ := s.Revoke(ctx, Revocation{Target: TargetCredential, Digest: betterauth.NewLookup(betterauth.KindAPIKey, "k").Digest}); n != 2 {
		t.Fatalf("Revoking the credential dropped %d entries, want 2", n)
	}
	if pos, _ := s.Len(); pos != 2 {
		t.Fatalf("%d entries left, want the other credential's 2", pos)
	}
}

// An organization's revocation drops its keys (found by the owner id even
// when the organization row was not) and the sessions active in it; a
// user's drops a key by its owner id even without the user row.
func TestRevokeByOrganization(t *testing.T) {
	t.Parallel()
	org := &betterauth.Organization{ID: "o1", Slug: "acme"}
	u := &betterauth.User{ID: "u1"}
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		key    *betterauth.APIKey
		target Target
		id     string
		drops  int
	}{
		{"the organization's key and its member's session", &betterauth.APIKey{ID: "k1", ReferenceID: "o1", Org: org}, TargetOrg, "o1", 2},
		{"a key whose organization row is gone", &betterauth.APIKey{ID: "k1", ReferenceID: "o1"}, TargetOrg, "o1", 2},
		{"another organization", &betterauth.APIKey{ID: "k1", ReferenceID: "o1", Org: org}, TargetOrg, "o2", 0},
		{"a user's key by owner id", &betterauth.APIKey{ID: "k1", ReferenceID: "u9"}, TargetUser, "u9", 1},
		{"a user id is not an organization's", &betterauth.APIKey{ID: "k1", ReferenceID: "o1", Org: org}, TargetUser, "o2", 0},
	} {
		inner := twoRecords{
			key: betterauth.Record{APIKey: tc.key},
			session: betterauth.Record{Session: &betterauth.Session{ID: "s1", ExpiresAt: t0.Add(time.Hour), User: u,
				Org: &betterauth.Membership{OrgID: "o1", Role: "admin"}}},
		}
		s := New(inner, Options{Now: (&clock{t0}).now})
		s.Lookup(ctx, betterauth.NewLookup(betterauth.KindAPIKey, "key"))
		s.Lookup(ctx, betterauth.NewLookup(betterauth.KindSession, "token"))
		if n, _ := s.Revoke(ctx, Revocation{Target: tc.target, ID: tc.id}); n != tc.drops {
			t.Errorf("%s: dropped %d, want %d", tc.name, n, tc.drops)
		}
	}
}
