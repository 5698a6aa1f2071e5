package betterauth

import (
	"strings"
	"testing"
)

// Test vectors computed by the real Better-Auth packages
// (docs/better-auth-compat.md §11-12).
const (
	vecSecret       = "test-secret-0123456789abcdefghijklmnopqrstuvwxyz"
	vecToken        = "aoJx7uLCwsPeAyLVHnBVFjacXa1LpN7M"
	vecCookie       = "aoJx7uLCwsPeAyLVHnBVFjacXa1LpN7M.S8ELSydfvlGDPBG7LpeOn7uaAdyX9wvqXdao1f2rtAU%3D"
	vecBearerSigned = "aoJx7uLCwsPeAyLVHnBVFjacXa1LpN7M.S8ELSydfvlGDPBG7LpeOn7uaAdyX9wvqXdao1f2rtAU="
)

func TestHashAPIKeyMatchesBetterAuth(t *testing.T) {
	t.Parallel()
	for key, want := range map[string]string{
		"ba_testkey": "I0efQ4nFhajqlLlgwiFSGyfgRDesQvDe-JU-SF3CQLI",
		"gw_JcdImTpAuQMEhQplssiAjYTYircXDRZvqXRCEbwAFFZGtcChARQeYiWPynfHLYNq": "1xv1rCbMA2eeD-YyVonTCeYqg3XoTd28E6NpB8hQCBA",
		"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijkl":    "EIMOdEFu9fR-pVTnx0RMUOeRVcfqHyKD8kp3X0RhrkE",
		"ba_sgcryLxAZNSEehSEODGkbVrwreJKkSsEfciuHrogTDZBeKFjuPwWzTDKeEkrDGbp": "_OJ7Ir1qCBrTSFpH62hmBXp8k64EE7W9VBDB38ORyvU",
	} {
		if got := HashAPIKey(key); got != want {
			t.Errorf("HashAPIKey(%q) = %q, want %q", key, got, want)
		}
		if got := NewLookup(KindAPIKey, key).KeyHash(); got != want {
			t.Errorf("Lookup.KeyHash(%q) = %q, want %q", key, got, want)
		}
	}
}

func TestSignerMatchesBetterAuth(t *testing.T) {
	t.Parallel()
	s := NewSigner(vecSecret)
	if got := s.Sign(vecToken); got != vecBearerSigned {
		t.Fatalf("Sign = %q, want %q", got, vecBearerSigned)
	}
	urlSafe := vecToken + ".S8ELSydfvlGDPBG7LpeOn7uaAdyX9wvqXdao1f2rtAU"
	tests := []struct {
		name   string
		verify func(string) (string, bool)
		in     string
		ok     bool
	}{
		{"cookie url-encoded", s.VerifyCookie, vecCookie, true},
		{"cookie decoded", s.VerifyCookie, vecBearerSigned, true},
		{"cookie without padding", s.VerifyCookie, urlSafe, false},
		{"cookie wrong secret", NewSigner("other-secret-0123456789abcdefghijklmnop").VerifyCookie, vecCookie, false},
		{"cookie unsigned", s.VerifyCookie, vecToken, false},
		{"cookie tampered token", s.VerifyCookie, "boJx7uLCwsPeAyLVHnBVFjacXa1LpN7M.S8ELSydfvlGDPBG7LpeOn7uaAdyX9wvqXdao1f2rtAU%3D", false},
		{"cookie bad escape", s.VerifyCookie, vecToken + ".%zz", false},
		{"bearer signed", s.VerifyBearer, vecBearerSigned, true},
		{"bearer url-encoded", s.VerifyBearer, vecCookie, true},
		{"bearer url-safe unpadded", s.VerifyBearer, urlSafe, true},
		{"bearer truncated signature", s.VerifyBearer, vecToken + ".S8ELSydfvlGDPBG7", false},
		{"bearer overlong signature", s.VerifyBearer, vecBearerSigned + "AAAAAAAAAAAA", false},
		{"cookie signature with encoded line breaks", s.VerifyCookie, vecToken + ".S8ELSydfvlGDPBG7LpeOn7uaAdyX9wvq%0D%0AXdao1f2rtAU%3D", false},
		{"bearer signature with encoded line breaks", s.VerifyBearer, vecToken + ".S8ELSydfvlGDPBG7LpeOn7uaAdyX9wvq%0D%0AXdao1f2rtAU%3D", false},
		{"bearer no token", s.VerifyBearer, ".S8ELSydfvlGDPBG7LpeOn7uaAdyX9wvqXdao1f2rtAU=", false},
		{"no secret", (*Signer)(nil).VerifyBearer, vecBearerSigned, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tok, ok := tt.verify(tt.in)
			if ok != tt.ok {
				t.Fatalf("ok = %v, want %v", ok, tt.ok)
			}
			if ok && tok != vecToken {
				t.Fatalf("token = %q, want %q", tok, vecToken)
			}
		})
	}
}

// What a store looks up for a key, and the digest a stored key maps back
// to, agree for hashed and plain keys; anything else stored maps to nothing.
func TestStoredKeyRoundTrip(t *testing.T) {
	t.Parallel()
	const key = "ba_sgcryLxAZNSEehSEODGkbVrwreJKkSsEfciuHrogTDZBeKFjuPwWzTDKeEkrDGbp"
	l := NewLookup(KindAPIKey, key)
	if got := l.StoredKey(false); got != "_OJ7Ir1qCBrTSFpH62hmBXp8k64EE7W9VBDB38ORyvU" {
		t.Errorf("hashed stored key %q", got)
	}
	if got := l.StoredKey(true); got != key {
		t.Errorf("plain stored key %q", got)
	}
	for _, plain := range []bool{false, true} {
		if d, ok := StoredKeyDigest(l.StoredKey(plain), plain); !ok || d != l.Digest {
			t.Errorf("plain=%v: digest %x %v, want %x", plain, d, ok, l.Digest)
		}
	}
	for _, stored := range []string{"", "short", "_OJ7Ir1qCBrTSFpH62hmBXp8k64EE7W9VBDB38ORyv=", strings.Repeat("A", 44), strings.Repeat("A", 400)} {
		if _, ok := StoredKeyDigest(stored, false); ok {
			t.Errorf("%q taken for a key hash", stored)
		}
	}
}
