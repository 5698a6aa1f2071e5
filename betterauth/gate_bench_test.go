package betterauth

import (
	"context"
	"net/netip"
	"testing"
)

func benchGate(b *testing.B) (*Gate, HTTPHeader) {
	const key = "ba_sgcryLxAZNSEehSEODGkbVrwreJKkSsEfciuHrogTDZBeKFjuPwWzTDKeEkrDGbp"
	rec := Record{APIKey: &APIKey{ID: "k1", ConfigID: "default", Enabled: true, User: alice()}}.Seal()
	store := staticStore{rec}
	v, _ := NewVerifier(Options{Store: store})
	return NewGate(GateConfig{Verifier: v}), HTTPHeader{"X-Api-Key": {key}, "Accept": {"*/*"}}
}

type staticStore struct{ rec Record }

func (s staticStore) Lookup(context.Context, Lookup) (Record, error) { return s.rec, nil }

// The gate's decision on a request whose record the store has at hand:
// extraction, the key's digest, the rules.
func BenchmarkGateDecide(b *testing.B) {
	g, h := benchGate(b)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		res := g.Decide(ctx, h, netip.Addr{})
		if !res.Allowed() {
			b.Fatal(res.Decision.Reason)
		}
	}
}

// The same work called piecewise, as front ends did before the gate.
func BenchmarkExtractVerify(b *testing.B) {
	g, h := benchGate(b)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		d, err := g.verifier.Verify(ctx, g.extractor.Extract(h))
		if err != nil || !d.Allowed() {
			b.Fatal(d.Reason)
		}
	}
}
