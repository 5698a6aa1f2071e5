package betterauth

import (
	"context"
	"net/netip"
	"testing"
	"time"
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

// The decision on a key restricted to client addresses by its metadata
// (api_key_allowed_ips_field), from an address its list admits, the last of
// eight prefixes.
func BenchmarkGateDecideKeyAllowedIPs(b *testing.B) {
	const key = "ba_sgcryLxAZNSEehSEODGkbVrwreJKkSsEfciuHrogTDZBeKFjuPwWzTDKeEkrDGbp"
	ips := ParseAllowedIPs([]byte(`{"allowedIps":["10.0.0.0/8","172.16.0.0/12","192.168.0.0/16","2001:db8::/32",
		"198.51.100.0/24","192.0.2.1","fd00::/8","203.0.113.0/24"]}`), "allowedIps")
	rec := Record{APIKey: &APIKey{ID: "k1", ConfigID: "default", Enabled: true, User: alice(), AllowedIPs: ips}}.Seal()
	v, _ := NewVerifier(Options{Store: staticStore{rec}})
	g := NewGate(GateConfig{Verifier: v, KeyAllowedIPs: true})
	h := HTTPHeader{"X-Api-Key": {key}, "Accept": {"*/*"}}
	client := netip.MustParseAddr("203.0.113.7")
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		res := g.Decide(ctx, h, client)
		if !res.Allowed() {
			b.Fatal(res.Decision.Reason)
		}
	}
}

// The decision on a cached OAuth access token (opaque or JWT: the store
// holds the same record) with a scope rule and the audience policy: what
// an MCP client's request costs once its token is in the cache.
func BenchmarkGateDecideOAuth(b *testing.B) {
	g, h := oauthGate()
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if res := g.Decide(ctx, h, netip.Addr{}); !res.Allowed() {
			b.Fatal(res.Decision.Reason)
		}
	}
}

func oauthGate() (*Gate, HTTPHeader) {
	rec := Record{OAuth: oauthToken()}.Seal()
	v, _ := NewVerifier(Options{Store: staticStore{rec}, OAuth: OAuthPolicy{Audience: resourceURL}, Now: func() time.Time { return t0 }})
	g := NewGate(GateConfig{Verifier: v, Rules: Rules{Scopes: []string{"mcp:read"}}, Extract: ExtractorConfig{OAuth: true}})
	return g, HTTPHeader{"Authorization": {"Bearer AbCdEfGhIjKlMnOpQrStUvWxYzAbCdEf"}, "Accept": {"*/*"}}
}
