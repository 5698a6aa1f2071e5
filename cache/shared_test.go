package cache

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/caddy-betterauth/caddy-betterauth/betterauth"
	"github.com/caddy-betterauth/caddy-betterauth/internal/throttle"
)

// An attacker who can write to the shared Redis, against a gateway whose
// database knows nothing of the key they invent.
func TestForgedSharedEntriesAreNotServed(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	admin := betterauth.Record{APIKey: &betterauth.APIKey{ID: "k-admin", Enabled: true, User: &betterauth.User{ID: "admin", Role: "admin"}}}
	payload, err := encode(admin, stamp{expires: t0.Add(time.Hour), written: t0.Add(time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	other, _ := NewSealer("not-the-gateways-secret-0123456789abcdef")
	victim := keyFor("gw:"+CodecVersion+":", keyOf(lookup("victim")))
	for _, tc := range []struct {
		name  string
		value func(remote *fakeRemote, name string) []byte
	}{
		{"plain JSON, as written before entries were sealed", func(*fakeRemote, string) []byte { return payload }},
		{"sealed with another key", func(_ *fakeRemote, name string) []byte { return other.Seal(name, payload) }},
		{"a genuine entry copied from another credential's key", func(remote *fakeRemote, _ string) []byte {
			return testSealer.Seal(victim, payload)
		}},
		{"a genuine entry with one byte changed", func(_ *fakeRemote, name string) []byte {
			b := testSealer.Seal(name, payload)
			b[len(b)-3] ^= 1
			return b
		}},
		{"a seal and nothing else", func(_ *fakeRemote, name string) []byte { return testSealer.Seal(name, nil)[:10] }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			remote := newFakeRemote()
			inner := &countingStore{} // the database: no such key
			s := New(inner, sharedOpts(remote, Options{Now: (&clock{t0}).now}))
			name := keyFor("gw:"+CodecVersion+":", keyOf(lookup("invented")))
			remote.setRaw(name, tc.value(remote, name))
			rec, err := s.Lookup(ctx, lookup("invented"))
			if err != nil || rec.Found() {
				t.Fatalf("the invented key was served: %+v %v", rec, err)
			}
			if inner.calls.Load() != 1 || s.Stats().ForgedEntries != 1 {
				t.Fatalf("database calls %d, forged entries %d", inner.calls.Load(), s.Stats().ForgedEntries)
			}
		})
	}
}

// A tampered entry is a miss: the database answers, and its fresh record
// replaces the entry.
func TestTamperedEntryIsReadAfresh(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	remote := newFakeRemote()
	a := New(&countingStore{rec: keyRecord(time.Time{})}, sharedOpts(remote, Options{}))
	a.Lookup(ctx, lookup("k"))
	name := <-remote.sets
	b := remote.value(name)
	b[40] ^= 0x20 // inside the JSON
	remote.setRaw(name, b)

	innerB := &countingStore{rec: keyRecord(time.Time{})}
	gwB := New(innerB, sharedOpts(remote, Options{}))
	if rec, err := gwB.Lookup(ctx, lookup("k")); err != nil || rec.APIKey == nil || rec.APIKey.ID != "k1" {
		t.Fatalf("%+v %v", rec, err)
	}
	if innerB.calls.Load() != 1 || gwB.Stats().ForgedEntries != 1 {
		t.Fatalf("database calls %d, forged %d", innerB.calls.Load(), gwB.Stats().ForgedEntries)
	}
	<-remote.sets
	if _, ok := testSealer.Open(name, remote.value(name)); !ok {
		t.Fatal("the fresh record did not replace the tampered entry")
	}
}

// Setting the epoch back after a revocation does not bring the revoked
// entry back, even with the entry itself restored byte for byte.
func TestEpochRollbackDoesNotReviveRevokedEntries(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	remote := newFakeRemote()
	inner := &countingStore{rec: keyRecord(time.Time{})}
	clk := &clock{t0}
	s := New(inner, sharedOpts(remote, Options{TTL: time.Hour, Now: clk.now}))
	s.Lookup(ctx, lookup("k"))
	name := <-remote.sets
	saved := remote.value(name)

	inner.rec = betterauth.Record{} // deleted in Better-Auth
	if _, epoch := s.Revoke(ctx, Revocation{Target: TargetAPIKey, ID: "k1"}); epoch != 1 {
		t.Fatalf("epoch after the revocation: %d", epoch)
	}
	if remote.value(name) != nil {
		t.Fatal("the revocation did not delete the entry it could name")
	}
	remote.setRaw(name, saved)
	remote.setEpoch("gw:"+CodecVersion+":epoch", 0)
	for range 3 {
		clk.advance(2 * time.Hour) // past every local entry
		if rec, _ := s.Lookup(ctx, lookup("k")); rec.Found() {
			t.Fatal("the revoked entry came back")
		}
	}
	// The gateway advanced the epoch past what it had seen.
	if st := s.Stats(); st.Epoch < 2 {
		t.Fatalf("stats %+v", st)
	}
	// A gateway that heard of the revocation (epoch 1) refuses the old
	// epoch as well.
	remote.setEpoch("gw:"+CodecVersion+":epoch", 0)
	other := New(&countingStore{}, sharedOpts(remote, Options{}))
	other.Relayed(ctx, 1, t0, Revocation{Target: TargetAPIKey, ID: "k1"})
	if rec, _ := other.Lookup(ctx, lookup("k")); rec.Found() {
		t.Fatal("a gateway that knew epoch 1 accepted an entry of epoch 0")
	}
}

// A local copy of a shared entry lives no longer than this gateway's TTL,
// whatever the entry says.
func TestSharedEntryKeptNoLongerThanOwnTTL(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clk := &clock{t0}
	remote := newFakeRemote()
	long := New(&countingStore{rec: keyRecord(time.Time{})}, sharedOpts(remote, Options{TTL: time.Hour, Jitter: -1, Now: clk.now}))
	innerShort := &countingStore{rec: keyRecord(time.Time{})}
	short := New(innerShort, sharedOpts(remote, Options{TTL: 10 * time.Second, Jitter: -1, Now: clk.now}))
	clk.advance(ClockSkew)
	long.Lookup(ctx, lookup("k"))
	<-remote.sets
	short.Lookup(ctx, lookup("k"))
	if innerShort.calls.Load() != 0 {
		t.Fatal("the second gateway did not read the shared entry")
	}
	gets := remote.gets
	clk.advance(9 * time.Second)
	short.Lookup(ctx, lookup("k"))
	if remote.gets != gets {
		t.Fatal("the local copy did not serve within this gateway's TTL")
	}
	clk.advance(2 * time.Second)
	short.Lookup(ctx, lookup("k"))
	if remote.gets != gets+1 {
		t.Fatal("the local copy outlived this gateway's TTL")
	}
}

// While a revocation advances the shared epoch (a slow Redis), lookups do
// not read the shared tier, which may still hold what is being revoked.
func TestRevocationInProgressBypassesTheSharedTier(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	remote := newFakeRemote()
	inner := &countingStore{rec: keyRecord(time.Time{})}
	s := New(inner, sharedOpts(remote, Options{TTL: time.Hour}))
	s.Lookup(ctx, lookup("k"))
	<-remote.sets

	remote.bumpGate, remote.bumping = make(chan struct{}), make(chan struct{}, 1)
	disabled := keyRecord(time.Time{})
	disabled.APIKey.Enabled = false
	inner.rec = disabled
	done := make(chan struct{})
	go func() {
		s.Revoke(ctx, Revocation{Target: TargetAPIKey, ID: "k1"})
		close(done)
	}()
	<-remote.bumping // the epoch is being advanced; the shared entry is still there
	gets := remote.gets
	rec, err := s.Lookup(ctx, lookup("k"))
	if err != nil || rec.APIKey == nil || rec.APIKey.Enabled {
		t.Fatalf("during the revocation: %+v %v (the revoked record was served)", rec, err)
	}
	if remote.gets != gets {
		t.Fatal("the shared tier was read while a revocation was advancing its epoch")
	}
	close(remote.bumpGate)
	<-done
	if rec, _ := s.Lookup(ctx, lookup("k")); rec.APIKey.Enabled {
		t.Fatal("the revoked record is cached after the revocation")
	}
}

// When a revocation cannot advance the shared epoch, the shared tier is
// not read (every replica might still serve the revoked entry from it)
// until an advance succeeds.
func TestFailedEpochAdvanceSuspendsTheSharedTier(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clk := &clock{t0}
	remote := newFakeRemote()
	inner := &countingStore{rec: keyRecord(time.Time{})}
	s := New(inner, sharedOpts(remote, Options{TTL: time.Hour, Now: clk.now}))
	s.Lookup(ctx, lookup("k"))
	<-remote.sets

	remote.bumpErr = errors.New("OOM command not allowed")
	if _, epoch := s.Revoke(ctx, Revocation{Target: TargetAPIKey, ID: "k1"}); epoch != 0 || !s.Stats().Suspended {
		t.Fatalf("epoch %d, stats %+v", epoch, s.Stats())
	}
	gets, calls := remote.gets, inner.calls.Load()
	for range 3 {
		clk.advance(100 * time.Millisecond)
		s.Revoke(ctx, Revocation{Target: TargetAPIKey, ID: "k1"}) // keep the entry out of memory
		if _, err := s.Lookup(ctx, lookup("k")); err != nil {
			t.Fatal(err)
		}
	}
	if remote.gets != gets || inner.calls.Load() != calls+3 {
		t.Fatalf("shared reads %d (want %d), database reads %d (want %d)", remote.gets, gets, inner.calls.Load(), calls+3)
	}
	remote.mu.Lock()
	remote.bumpErr = nil
	remote.mu.Unlock()
	clk.advance(resumeEvery)
	s.Revoke(ctx, Revocation{Target: TargetAPIKey, ID: "k1"})
	s.Lookup(ctx, lookup("k")) // advances the epoch, still from the database
	if s.Stats().Suspended {
		t.Fatal("still suspended after the epoch could be advanced")
	}
	s.Revoke(ctx, Revocation{Target: TargetAPIKey, ID: "k1"})
	s.Lookup(ctx, lookup("k"))
	if remote.gets == gets {
		t.Fatal("the shared tier was not read again")
	}
}

// A shared read that races a revocation reads the epoch from before it:
// that is a stale read, not an epoch set back. It is not served, and the
// shared tier stays readable (suspending it would advance the epoch again
// on resume, dropping every gateway's shared entries).
func TestReadRacingARevocationDoesNotSuspend(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	remote := newFakeRemote()
	inner := &countingStore{rec: keyRecord(time.Time{})}
	s := New(inner, sharedOpts(remote, Options{TTL: time.Hour}))
	remote.mu.Lock()
	remote.afterGet = func() { s.Revoke(ctx, Revocation{Target: TargetAPIKey, ID: "other"}) }
	remote.mu.Unlock()
	if rec, err := s.Lookup(ctx, lookup("k")); err != nil || rec.APIKey == nil {
		t.Fatal(rec, err)
	}
	if s.Stats().Suspended {
		t.Fatal("a read that raced a revocation suspended the shared tier")
	}
	remote.mu.Lock()
	defer remote.mu.Unlock()
	for k, epoch := range remote.epochs {
		if len(remote.epochs) != 1 || epoch != 1 {
			t.Fatalf("epoch %s = %d of %d, want one advanced once (by the revocation)", k, epoch, len(remote.epochs))
		}
	}
	if len(remote.epochs) == 0 {
		t.Fatal("the revocation advanced no epoch")
	}
}

// An epoch set out of the range Redis can count exactly is an error, not a
// value that stops advancing: nothing is read or written under it, and a
// revocation that cannot move it suspends the shared tier.
func TestEpochOutOfRangeIsRefused(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clk := &clock{t0}
	remote := newFakeRemote()
	inner := &countingStore{rec: keyRecord(time.Time{})}
	s := New(inner, sharedOpts(remote, Options{TTL: time.Hour, Now: clk.now}))
	clk.advance(ClockSkew)
	remote.setEpoch("gw:"+CodecVersion+":epoch", 1<<60)
	if rec, err := s.Lookup(ctx, lookup("k")); err != nil || rec.APIKey == nil || inner.calls.Load() != 1 {
		t.Fatalf("%+v %v", rec, err)
	}
	if len(remote.sets) != 0 || s.Stats().Epoch != 0 {
		t.Fatalf("written under an epoch out of range (%d writes, epoch %d)", len(remote.sets), s.Stats().Epoch)
	}
	if _, epoch := s.Revoke(ctx, Revocation{Target: TargetAPIKey, ID: "k1"}); epoch != 0 || !s.Stats().Suspended {
		t.Fatalf("epoch %d, %+v", epoch, s.Stats())
	}
}

// A gateway that starts after a revocation has seen no epoch, so setting
// the epoch back would fool it; entries written before it started are not
// read, whatever their epoch.
func TestNewGatewayRefusesEntriesFromBeforeItStarted(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clk := &clock{t0}
	remote := newFakeRemote()
	inner := &countingStore{rec: keyRecord(time.Time{})}
	a := New(inner, sharedOpts(remote, Options{TTL: time.Hour, Now: clk.now}))
	clk.advance(ClockSkew)
	a.Lookup(ctx, lookup("k"))
	name := <-remote.sets
	saved := remote.value(name)
	clk.advance(time.Minute)
	a.Revoke(ctx, Revocation{Target: TargetAPIKey, ID: "k1"})

	clk.advance(time.Minute)
	remote.setRaw(name, saved)
	remote.setEpoch("gw:"+CodecVersion+":epoch", 0)
	d := New(&countingStore{}, sharedOpts(remote, Options{TTL: time.Hour, Now: clk.now}))
	if rec, _ := d.Lookup(ctx, lookup("k")); rec.Found() {
		t.Fatal("a new gateway accepted an entry written before a revocation it never saw")
	}
	// And a relayed revocation moves the watermark of a gateway that was
	// already running: an entry written before it is refused, even under
	// the current epoch.
	clk2 := &clock{t0}
	e := New(&countingStore{}, sharedOpts(remote, Options{TTL: time.Hour, Now: clk2.now}))
	payload, _ := encode(keyRecord(time.Time{}), stamp{expires: t0.Add(time.Hour), epoch: 5, written: t0.Add(30 * time.Second)})
	remote.setRaw(name, testSealer.Seal(name, payload))
	remote.setEpoch("gw:"+CodecVersion+":epoch", 5)
	clk2.advance(2 * time.Minute)
	e.Relayed(ctx, 5, t0.Add(time.Minute), Revocation{Target: TargetAPIKey, ID: "k1"})
	if rec, _ := e.Lookup(ctx, lookup("k")); rec.Found() {
		t.Fatal("a gateway served an entry written before a revocation it was told of")
	}
}

// Entries are stamped with when their data was read, and a stamp ahead of
// the reader's clock is refused: neither a writer with a clock ahead nor a
// read that raced a revocation yields an entry a replica started after the
// revocation would take, even with the epoch set back.
func TestEntriesStampedWhenRead(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	t.Run("a writer whose clock is ahead", func(t *testing.T) {
		t.Parallel()
		remote := newFakeRemote()
		clk, ahead := &clock{t0}, &clock{t0.Add(10 * time.Second)}
		writer := New(&countingStore{rec: keyRecord(time.Time{})}, sharedOpts(remote, Options{TTL: time.Minute, Now: ahead.now}))
		ahead.advance(ClockSkew)
		writer.Lookup(ctx, lookup("k"))
		<-remote.sets
		clk.advance(3 * time.Second) // a replica that starts now, before the writer's stamp
		fresh := New(&countingStore{}, sharedOpts(remote, Options{TTL: time.Minute, Now: clk.now}))
		clk.advance(ClockSkew)
		if rec, _ := fresh.Lookup(ctx, lookup("k")); rec.Found() {
			t.Fatal("an entry stamped ahead of this gateway's clock was served")
		}
	})
	t.Run("a read that raced a revocation", func(t *testing.T) {
		t.Parallel()
		remote := newFakeRemote()
		clk := &clock{t0}
		inner := gated(keyRecord(time.Time{}))
		slow := New(inner, sharedOpts(remote, Options{TTL: time.Minute, Now: clk.now}))
		clk.advance(ClockSkew)
		done := make(chan struct{})
		go func() { slow.Lookup(ctx, lookup("k")); close(done) }()
		<-inner.entered // the row is read before the revocation commits
		clk.advance(time.Second)
		other := New(&countingStore{}, sharedOpts(remote, Options{TTL: time.Minute, Now: clk.now}))
		other.Revoke(ctx, Revocation{Target: TargetAPIKey, ID: "k1"}) // epoch 1; slow was not told
		clk.advance(time.Second)
		fresh := New(&countingStore{}, sharedOpts(remote, Options{TTL: time.Minute, Now: clk.now}))
		clk.advance(2 * time.Second)
		close(inner.gate)
		<-done
		name := <-remote.sets // written after the revocation, under epoch 0
		remote.setEpoch("gw:"+CodecVersion+":epoch", 0)
		if rec, _ := fresh.Lookup(ctx, lookup("k")); rec.Found() {
			t.Fatalf("a read from before the revocation was served by a replica started after it (%s)", name)
		}
	})
}

func TestSealerRoundTrip(t *testing.T) {
	t.Parallel()
	sealed := testSealer.Seal("a:b", []byte("payload"))
	if p, ok := testSealer.Open("a:b", sealed); !ok || string(p) != "payload" {
		t.Fatalf("%q %v", p, ok)
	}
	// The place is bound: the same bytes elsewhere, or a place that only
	// moves the boundary, fail.
	for _, place := range []string{"a:c", "a:bp", "a:"} {
		if _, ok := testSealer.Open(place, sealed); ok {
			t.Errorf("opened at %q", place)
		}
	}
	if _, err := NewSealer(""); err == nil {
		t.Error("a sealer without a key")
	}
}

// What checking a shared entry's seal adds to a shared-tier hit.
func BenchmarkSealerOpen(b *testing.B) {
	payload, _ := encode(keyRecord(t0.Add(time.Hour)), stamp{expires: t0.Add(time.Minute), epoch: 7, written: t0})
	name := keyFor("caddy-betterauth:0123456789ab:v2:", keyOf(lookup("k")))
	sealed := testSealer.Seal(name, payload)
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := testSealer.Open(name, sealed); !ok {
			b.Fatal("not opened")
		}
	}
}

// The shared tier reads the cache's clock for everything, the pace of its
// warnings included: while the clock stands still an outage is reported
// once, and once more when it has moved past throttle.Every.
func TestRemoteTierRunsOnTheInjectedClock(t *testing.T) {
	t.Parallel()
	core, logs := observer.New(zap.WarnLevel)
	clk := &clock{t0}
	remote := newFakeRemote()
	remote.err = errors.New("connection refused")
	s := New(&countingStore{}, sharedOpts(remote, Options{Now: clk.now, Logger: zap.New(core)}))
	ctx := context.Background()
	failures := func() int { return logs.FilterMessageSnippet("shared cache read failed").Len() }
	for i := range 5 {
		if _, err := s.Lookup(ctx, lookup(fmt.Sprint("key", i))); err != nil {
			t.Fatal(err)
		}
	}
	if n := failures(); n != 1 {
		t.Fatalf("%d warnings for 5 failures at one instant, want 1", n)
	}
	clk.advance(throttle.Every)
	s.Lookup(ctx, lookup("key5"))
	if n := failures(); n != 2 {
		t.Fatalf("%d warnings once the clock moved past the interval, want 2", n)
	}
	if remote.gets != 6 {
		t.Fatalf("%d shared reads, want 6", remote.gets)
	}
}
