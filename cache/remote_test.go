package cache

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-betterauth/caddy-betterauth/betterauth"
)

// fakeRemote is a map with switchable failure; sets arrive on a channel.
// bumpGate, when set, holds every Bump until it is closed; bumpErr fails
// Bump alone.
type fakeRemote struct {
	mu       sync.Mutex
	epochs   map[string]uint64
	m        map[string][]byte
	ttl      map[string]time.Duration
	err      error
	bumpErr  error
	bumpGate chan struct{}
	bumping  chan struct{} // receives when a Bump starts, if bumpGate is set
	afterGet func()        // called once, by the next Get, after it read
	gets     int
	dels     []string
	sets     chan string
}

func newFakeRemote() *fakeRemote {
	return &fakeRemote{m: map[string][]byte{}, ttl: map[string]time.Duration{}, epochs: map[string]uint64{}, sets: make(chan string, 16)}
}

func (f *fakeRemote) Get(_ context.Context, k, epochKey string) ([]byte, uint64, error) {
	f.mu.Lock()
	f.gets++
	v, epoch, err, hook := f.m[k], f.epochs[epochKey], f.err, f.afterGet
	f.afterGet = nil
	f.mu.Unlock()
	if hook != nil {
		hook()
	}
	if err != nil {
		return nil, 0, err
	}
	return v, epoch, nil
}

func (f *fakeRemote) Bump(ctx context.Context, epochKey string, floor uint64) (uint64, error) {
	if f.bumpGate != nil {
		f.bumping <- struct{}{}
		select {
		case <-f.bumpGate:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return 0, f.err
	}
	if f.bumpErr != nil {
		return 0, f.bumpErr
	}
	f.epochs[epochKey] = max(f.epochs[epochKey], floor) + 1
	return f.epochs[epochKey], nil
}

func (f *fakeRemote) Set(_ context.Context, k string, v []byte, ttl time.Duration) error {
	f.mu.Lock()
	err := f.err
	if err == nil {
		f.m[k], f.ttl[k] = v, ttl
	}
	f.mu.Unlock()
	f.sets <- k
	return err
}

func (f *fakeRemote) Del(_ context.Context, keys ...string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return f.err
	}
	for _, k := range keys {
		delete(f.m, k)
		f.dels = append(f.dels, k)
	}
	return nil
}

func (f *fakeRemote) value(k string) []byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.m[k]
}

func (f *fakeRemote) setRaw(k string, v []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.m[k] = v
}

func (f *fakeRemote) setEpoch(k string, v uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.epochs[k] = v
}

// testSealer seals as every gateway of these tests does.
var testSealer, _ = NewSealer("shared-secret-0123456789abcdefghijklmnop")

// sharedOpts are the options of a gateway on remote with the test key.
func sharedOpts(remote Remote, o Options) Options {
	o.Remote, o.Sealer = remote, testSealer
	if o.RemotePrefix == "" {
		o.RemotePrefix = "gw:"
	}
	return o
}

const secretKey = "ba_sgcryLxAZNSEehSEODGkbVrwreJKkSsEfciuHrogTDZBeKFjuPwWzTDKeEkrDGbp"

func TestRemoteSharesRecordsBetweenGateways(t *testing.T) {
	t.Parallel()
	clk := &clock{t0}
	remote := newFakeRemote()
	rec := betterauth.Record{APIKey: &betterauth.APIKey{ID: "k1", ConfigID: "default", Enabled: true, CreatedAt: t0,
		User: &betterauth.User{ID: "u1", Email: "a@example.com", Name: "Zoë", Role: "admin", Banned: true, BanExpires: t0.Add(time.Hour)}}}
	innerA := &countingStore{rec: rec}
	a := New(innerA, sharedOpts(remote, Options{TTL: 10 * time.Second, Jitter: -1, Now: clk.now, RemotePrefix: "gw:db1:"}))
	innerB := &countingStore{}
	b := New(innerB, sharedOpts(remote, Options{TTL: 10 * time.Second, Jitter: -1, Now: clk.now, RemotePrefix: "gw:db1:"}))
	clk.advance(ClockSkew) // entries written as a gateway starts are not read
	if _, err := a.Lookup(context.Background(), lookup(secretKey)); err != nil {
		t.Fatal(err)
	}
	key := <-remote.sets
	if !strings.HasPrefix(key, "gw:db1:"+CodecVersion+":k:") || strings.Contains(key, secretKey) || !strings.HasSuffix(key, betterauth.HashAPIKey(secretKey)) {
		t.Fatalf("shared key %q", key)
	}
	if v := string(remote.m[key]); strings.Contains(v, secretKey) || strings.Contains(v, betterauth.HashAPIKey(secretKey)) {
		t.Fatalf("shared value holds the key or its hash: %s", v)
	}
	if remote.ttl[key] != 10*time.Second {
		t.Fatalf("shared TTL %v", remote.ttl[key])
	}

	// A second gateway: served from the shared cache, then from its own.
	clk.advance(4 * time.Second)
	for range 2 {
		got, err := b.Lookup(context.Background(), lookup(secretKey))
		if err != nil || got.APIKey == nil || got.APIKey.User.Name != "Zoë" || !got.APIKey.User.BanExpires.Equal(t0.Add(time.Hour)) {
			t.Fatalf("gateway B: %+v, %v", got, err)
		}
	}
	if innerB.calls.Load() != 0 || remote.gets != 2 { // A's miss, B's miss
		t.Fatalf("database calls %d, shared reads %d", innerB.calls.Load(), remote.gets)
	}
	// B keeps the entry only as long as A's would have lived.
	clk.advance(6 * time.Second)
	b.Lookup(context.Background(), lookup(secretKey))
	if innerB.calls.Load() != 1 {
		t.Fatalf("B served the entry past its shared expiry")
	}
}

func TestRemoteFailureFallsThroughToTheDatabase(t *testing.T) {
	t.Parallel()
	remote := newFakeRemote()
	remote.err = errors.New("dial tcp 127.0.0.1:6379: connection refused")
	inner := &countingStore{rec: keyRecord(time.Time{})}
	s := New(inner, sharedOpts(remote, Options{}))
	rec, err := s.Lookup(context.Background(), lookup("k"))
	if err != nil || rec.APIKey == nil || inner.calls.Load() != 1 {
		t.Fatalf("%+v %v (database calls %d)", rec, err, inner.calls.Load())
	}
	if len(remote.sets) != 0 {
		t.Fatal("a write was tried after the read failed: a failing Redis is left alone")
	}
}

func TestRemoteIgnoresUnknownAndExpiredEntries(t *testing.T) {
	t.Parallel()
	clk := &clock{t0}
	remote := newFakeRemote()
	inner := &countingStore{rec: keyRecord(time.Time{})}
	s := New(inner, sharedOpts(remote, Options{Now: clk.now}))
	k := keyFor("gw:"+CodecVersion+":", keyOf(lookup("k")))
	old, _ := encode(keyRecord(time.Time{}), stamp{expires: t0.Add(-time.Second), written: t0.Add(-time.Minute)})
	remote.m[k] = testSealer.Seal(k, old)
	junk := keyFor("gw:"+CodecVersion+":", keyOf(lookup("junk")))
	remote.m[junk] = testSealer.Seal(junk, []byte("{not json"))
	for _, secret := range []string{"k", "junk"} {
		if rec, err := s.Lookup(context.Background(), lookup(secret)); err != nil || rec.APIKey == nil {
			t.Fatalf("%s: %+v %v", secret, rec, err)
		}
	}
	if inner.calls.Load() != 2 {
		t.Fatalf("database calls %d, want 2", inner.calls.Load())
	}
}

func TestCodecRoundTrip(t *testing.T) {
	t.Parallel()
	five := int64(5)
	recs := []betterauth.Record{
		{APIKey: &betterauth.APIKey{ID: "k", ConfigID: "org", Enabled: false, ExpiresAt: t0, Remaining: 0, HasRemaining: true,
			RefillInterval: time.Minute, RefillAmount: five, HasRefillAmount: true, LastRefillAt: t0, CreatedAt: t0,
			Permissions: betterauth.Permissions{"files": {"read", "write"}},
			User:        &betterauth.User{ID: "u", Email: "e", Name: "n\r\n", Role: "r"}}},
		{Session: &betterauth.Session{ID: "s", ExpiresAt: t0, User: &betterauth.User{ID: "u"}}},
		{APIKey: &betterauth.APIKey{ID: "k", ConfigID: "org", Enabled: true, ReferenceID: "o",
			Org: &betterauth.Organization{ID: "o", Slug: "acme", Name: "Acmé\r\n"}}},
		{APIKey: &betterauth.APIKey{ID: "k", Enabled: true, ReferenceID: "gone"}},
		{Session: &betterauth.Session{ID: "s", ExpiresAt: t0, User: &betterauth.User{ID: "u"}, Org: &betterauth.Membership{OrgID: "o", Role: "owner,admin"}}},
	}
	for _, r := range recs {
		b, err := encode(r, stamp{expires: t0.Add(time.Minute), epoch: 7, written: t0})
		if err != nil {
			t.Fatal(err)
		}
		got, st, err := decode(b)
		if err != nil || !st.expires.Equal(t0.Add(time.Minute)) || st.epoch != 7 || !st.written.Equal(t0) {
			t.Fatalf("decode: %+v %v", st, err)
		}
		want := r
		if k := r.APIKey; k != nil && k.User == nil {
			g := got.APIKey
			if g.User != nil || g.ReferenceID != k.ReferenceID || (k.Org == nil) != (g.Org == nil) || (k.Org != nil && *g.Org != *k.Org) {
				t.Errorf("owner round trip: %+v %+v", g, g.Org)
			}
			continue
		}
		if m := r.Session; m != nil && m.Org != nil && (got.Session.Org == nil || *got.Session.Org != *m.Org) {
			t.Errorf("membership round trip: %+v", got.Session.Org)
		}
		if r.APIKey != nil {
			g, w := *got.APIKey, *want.APIKey
			if g.User.Name != w.User.Name || g.Remaining != w.Remaining || !g.HasRemaining || g.RefillAmount != 5 ||
				g.RefillInterval != time.Minute || !g.ExpiresAt.Equal(t0) || g.Enabled || g.ConfigID != "org" ||
				!g.Permissions.Grants(betterauth.Permissions{"files": {"read", "write"}}) {
				t.Errorf("key round trip: %+v", g)
			}
		} else if got.Session.ID != "s" || !got.Session.ExpiresAt.Equal(t0) {
			t.Errorf("session round trip: %+v", got.Session)
		}
	}
	if _, err := encode(betterauth.Record{}, stamp{expires: t0}); err == nil {
		t.Error("empty record encoded")
	}
}

// Lookup kinds are part of every key, here and in Redis: the values
// gateways of earlier versions wrote ("k", "s", "e") must not move.
func TestSharedKeysNameTheKind(t *testing.T) {
	t.Parallel()
	const secret = "ba_secret"
	for kind, letter := range map[betterauth.Kind]string{betterauth.KindAPIKey: "k", betterauth.KindSession: "s", betterauth.KindEither: "e"} {
		l := betterauth.NewLookup(kind, secret)
		if got, want := keyFor("p:", keyOf(l)), "p:"+letter+":"+l.KeyHash(); got != want {
			t.Errorf("kind %d: key %q, want %q", kind, got, want)
		}
	}
	if betterauth.KindAPIKey != 1 || betterauth.KindSession != 2 || betterauth.KindEither != 3 {
		t.Error("the lookup kinds' values changed: cached keys would no longer match")
	}
}

// stalledRemote is a Redis that accepted the connection and answers
// nothing: every read waits out its deadline.
type stalledRemote struct{ *fakeRemote }

func (stalledRemote) Get(ctx context.Context, _, _ string) ([]byte, uint64, error) {
	<-ctx.Done()
	return nil, 0, ctx.Err()
}

// A shared tier that does not answer never costs a lookup the database's
// answer, even with a Redis timeout as long as the lookup's: the tier gets
// at most half of what is left of lookup_timeout.
func TestStalledRemoteLeavesTheDatabaseItsTime(t *testing.T) {
	t.Parallel()
	inner := &countingStore{rec: keyRecord(time.Time{})}
	s := New(deadlineStore{inner}, sharedOpts(stalledRemote{newFakeRemote()}, Options{LookupTimeout: 300 * time.Millisecond, RemoteTimeout: time.Minute}))
	rec, err := s.Lookup(context.Background(), lookup("k"))
	if err != nil || rec.APIKey == nil || inner.calls.Load() != 1 {
		t.Fatalf("%+v %v (database calls %d)", rec, err, inner.calls.Load())
	}
}

// deadlineStore fails a lookup whose context is done, as a database does.
type deadlineStore struct{ *countingStore }

func (d deadlineStore) Lookup(ctx context.Context, l betterauth.Lookup) (betterauth.Record, error) {
	if err := ctx.Err(); err != nil {
		return betterauth.Record{}, err
	}
	return d.countingStore.Lookup(ctx, l)
}
