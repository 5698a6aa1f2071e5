package cache

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/caddy-betterauth/caddy-betterauth/betterauth"
)

// Allow-lists survive the shared tier: the prefixes, a malformed list's
// refusal and its problem, and the absence of a list.
func TestCodecCarriesAllowedIPs(t *testing.T) {
	t.Parallel()
	listed := betterauth.ParseAllowedIPs([]byte(`{"allowedIps":["10.0.0.0/8","203.0.113.7","2001:db8::/32","::ffff:192.0.2.0/120"]}`), "allowedIps")
	malformed := betterauth.ParseAllowedIPs([]byte(`{"allowedIps":[]}`), "allowedIps")
	for _, l := range []*betterauth.IPAllowList{listed, malformed, nil} {
		rec := betterauth.Record{APIKey: &betterauth.APIKey{ID: "k", Enabled: true, AllowedIPs: l, User: &betterauth.User{ID: "u"}}}
		b, err := encode(rec, stamp{expires: t0.Add(time.Minute), written: t0, ipField: "allowedIps"})
		if err != nil {
			t.Fatal(err)
		}
		got, st, err := decode(b)
		if err != nil || st.ipField != "allowedIps" {
			t.Fatalf("decode: %v %+v", err, st)
		}
		g := got.APIKey.AllowedIPs
		switch {
		case l == nil:
			if g != nil {
				t.Errorf("an unrestricted key came back restricted: %+v", g)
			}
		case g == nil || g.Problem != l.Problem || len(g.Prefixes) != len(l.Prefixes):
			t.Errorf("%+v came back as %+v", l, g)
		default:
			for i := range l.Prefixes {
				if g.Prefixes[i] != l.Prefixes[i] {
					t.Errorf("prefix %d: %v, want %v", i, g.Prefixes[i], l.Prefixes[i])
				}
			}
		}
	}
	if !listed.Admits(netip.MustParseAddr("192.0.2.7")) {
		t.Fatal("the mapped entry")
	}
}

// A key's shared entry is served only to gateways that read allow-lists
// from the same metadata field: one that reads none must not make a
// restricted key unrestricted for one that does.
func TestSharedEntriesNeedTheSameAllowedIPsField(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ writer, reader string }{{"", "allowedIps"}, {"allowedIps", ""}, {"ips", "allowedIps"}} {
		clk := &clock{t0}
		remote := newFakeRemote()
		rec := keyRecord(time.Time{})
		a := New(&countingStore{rec: rec}, sharedOpts(remote, Options{Now: clk.now, AllowedIPsField: tc.writer}))
		innerB := &countingStore{rec: rec}
		b := New(innerB, sharedOpts(remote, Options{Now: clk.now, AllowedIPsField: tc.reader}))
		same := New(&countingStore{}, sharedOpts(remote, Options{Now: clk.now, AllowedIPsField: tc.writer}))
		clk.advance(ClockSkew)
		ctx := context.Background()
		if _, err := a.Lookup(ctx, lookup("k")); err != nil {
			t.Fatal(err)
		}
		<-remote.sets
		clk.advance(2 * ClockSkew)
		if got, err := same.Lookup(ctx, lookup("k")); err != nil || got.APIKey == nil {
			t.Fatalf("a gateway reading alike was not served: %+v %v", got, err)
		}
		if got, err := b.Lookup(ctx, lookup("k")); err != nil || got.APIKey == nil || innerB.calls.Load() != 1 {
			t.Fatalf("writer %q, reader %q: served from the shared entry (database calls %d)", tc.writer, tc.reader, innerB.calls.Load())
		}
	}
}
