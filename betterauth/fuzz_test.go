package betterauth

import (
	"bytes"
	"encoding/base64"
	"net/url"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

// fuzzExtractors are the extractor configurations the fuzz targets try,
// picked by a byte of the input.
var fuzzExtractors = []ExtractorConfig{
	{},
	{APIKeyHeaders: []string{"x-api-key", "api-key"}, APIKeyPrefixes: []string{"ba_"}, CookiePrefix: "app"},
	{RequireSignature: true, OAuth: true, OAuthPrefix: "oat_"},
	{OAuth: true, CookieNames: []string{"sid"}},
}

// fuzzHeaders builds a request's headers from fuzz input: bits of shape
// say which headers are present, and which are sent twice.
func fuzzHeaders(e *Extractor, shape uint8, apiKey, auth, cookie string) HTTPHeader {
	h := HTTPHeader{}
	add := func(name, v string, present, twice bool) {
		if !present {
			return
		}
		h[name] = append(h[name], v)
		if twice {
			h[name] = append(h[name], v)
		}
	}
	keyName := e.apiKeyHeaders[int(shape>>6)%len(e.apiKeyHeaders)]
	add(keyName, apiKey, shape&1 != 0, shape&2 != 0)
	add("Authorization", auth, shape&4 != 0, shape&8 != 0)
	add("Cookie", cookie, shape&16 != 0, shape&32 != 0)
	return h
}

// FuzzExtract checks that Extract yields one well-formed credential, from
// the source that comes first, whatever the headers say.
func FuzzExtract(f *testing.F) {
	const key = "ba_sgcryLxAZNSEehSEODGkbVrwreJKkSsEfciuHrogTDZBeKFjuPwWzTDKeEkrDGbp"
	f.Add(uint8(0), uint8(1), key, "", "")
	f.Add(uint8(0), uint8(3), key, "", "")
	f.Add(uint8(1), uint8(0x45), "  "+key+" ", "Bearer x", "")
	f.Add(uint8(0), uint8(4), "", "Bearer eF0pjcp0dTDLm4l4PXT3d4mb1V3qYDGc.tO3Y5Eo+5PsAWRqzwgw+BbQHQwv0CVtE/rgxkiBlzj8=", "")
	f.Add(uint8(2), uint8(4), "", "bearer oat_abcdef", "")
	f.Add(uint8(2), uint8(4), "", "Bearer eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ1In0.c2ln", "")
	f.Add(uint8(0), uint8(12), "", "Bearer a", "")
	f.Add(uint8(0), uint8(16), "", "", "a=1; __Secure-better-auth.session_token=tok.sig; better-auth.session_token=old")
	f.Add(uint8(1), uint8(16), "", "", "\xa0app.session_token\t=\"v\"")
	f.Add(uint8(3), uint8(20), "", "Basic dXNlcjpwYXNz", "sid=s; x=y")
	f.Add(uint8(0), uint8(16), "", "", "better-auth.session_token="+strings.Repeat("a", MaxCredentialLen+1))
	f.Add(uint8(0), uint8(1), "k\x00ey", "", "")
	f.Fuzz(func(t *testing.T, cfg, shape uint8, apiKey, auth, cookie string) {
		e := NewExtractor(fuzzExtractors[int(cfg)%len(fuzzExtractors)])
		h := fuzzHeaders(e, shape, apiKey, auth, cookie)
		c := e.Extract(h)

		if c.Kind == KindNone {
			if c != (Credential{}) {
				t.Fatalf("no credential, yet %+v", c)
			}
			return
		}
		if c.Kind == KindInvalid {
			if c.Value != "" {
				t.Fatalf("an invalid credential has a value: %+v", c)
			}
		} else {
			limit := MaxCredentialLen
			if c.Kind == KindJWT {
				limit = MaxJWTLen
			}
			// An empty cookie ("name=") is read as an empty token, which
			// no lookup finds; header values are never empty.
			if (c.Value == "" && c.Source != SourceCookie) || len(c.Value) > limit || !utf8.ValidString(c.Value) || strings.IndexByte(c.Value, 0) >= 0 {
				t.Fatalf("value out of bounds: %+v", c)
			}
			switch c.Kind {
			case KindAPIKey, KindSession, KindEither, KindOAuth, KindSession | KindOAuth, KindAPIKey | KindOAuth,
				KindEither | KindOAuth, KindJWT:
			default:
				t.Fatalf("kind %d is no kind", c.Kind)
			}
		}

		// One source, and the first present: the API-key header, then a
		// Bearer Authorization, then the cookie.
		keyVals := h[e.apiKeyHeaders[int(shape>>6)%len(e.apiKeyHeaders)]]
		keyPresent := len(keyVals) > 1 || len(keyVals) == 1 && strings.TrimSpace(keyVals[0]) != ""
		switch c.Source {
		case SourceAPIKeyHeader:
			if !keyPresent || !slices.Contains(e.apiKeyHeaders, c.Name) {
				t.Fatalf("an API key from nowhere: %+v", c)
			}
			if len(keyVals) == 1 && c.Kind != KindInvalid && c.Value != strings.TrimSpace(keyVals[0]) {
				t.Fatalf("API key %q read as %q", keyVals[0], c.Value)
			}
			if len(keyVals) > 1 && c.Kind != KindInvalid {
				t.Fatalf("a key sent twice is valid: %+v", c)
			}
		case SourceBearer:
			if keyPresent || c.Name != "Authorization" || len(h["Authorization"]) == 0 {
				t.Fatalf("a bearer credential from nowhere, or despite an API key: %+v", c)
			}
			if len(h["Authorization"]) > 1 && c.Kind != KindInvalid {
				t.Fatalf("Authorization sent twice is valid: %+v", c)
			}
		case SourceCookie:
			if keyPresent || len(h["Cookie"]) == 0 || !slices.Contains(e.cookieNames, c.Name) {
				t.Fatalf("a cookie credential from nowhere, or despite an API key: %+v", c)
			}
			if v, ok := bearerValue(auth); ok && len(h["Authorization"]) > 0 && v != "" {
				t.Fatalf("a cookie read despite a bearer token: %+v", c)
			}
			if c.Kind != KindSession && c.Kind != KindInvalid {
				t.Fatalf("a cookie holds kind %d", c.Kind)
			}
		default:
			t.Fatalf("a credential without a source: %+v", c)
		}
	})
}

// FuzzStrip checks that no gateway-owned header survives Strip, whatever
// its spelling, and that once an allowed request's credentials are removed
// the extractor finds none left (nothing rides along upstream).
func FuzzStrip(f *testing.F) {
	f.Add(uint8(0), uint8(0x15), true, "X-Auth-User-Id", "x_auth_user_id", "ba_key", "Bearer tok", "a=1; better-auth.session_token=t.s; b=2")
	f.Add(uint8(1), uint8(0x15), true, "x-AUTH-method", "X_Auth_", "k", "bearer\tx", "app.session_data.0=e30; app.account_data=x; c=3")
	f.Add(uint8(2), uint8(0x14), false, "X-Auth-Org-Id", "X-Authorization", "", "Basic dXNlcjpwYXNz", "__Secure-better-auth.session_token_multi-abc=1")
	f.Add(uint8(3), uint8(0x37), true, "X-AUTH-SCOPES", "x-auth-", "k", "Bearer", " sid=1 ;sid=2;better-auth.two_factor=x")
	f.Add(uint8(0), uint8(0x10), true, "Accept", "X-Auth-Key-Id", "", "", "\xa0better-auth.session_token=t; d=4")
	f.Fuzz(func(t *testing.T, cfg, shape uint8, allowed bool, name1, name2, apiKey, auth, cookie string) {
		g := NewGate(GateConfig{Extract: fuzzExtractors[int(cfg)%len(fuzzExtractors)]})
		h := fuzzHeaders(g.extractor, shape, apiKey, auth, cookie)
		h[name1] = append(h[name1], "forged")
		h[name2] = append(h[name2], "forged")
		r := Result{gate: g}
		if allowed {
			r.Decision = Decision{Reason: Allowed, Method: MethodAPIKey, User: &User{ID: "u1"}}
		}
		var removed []string
		r.Strip(h, &removed)
		for name := range h {
			if IsOwnedHeader(name) {
				t.Fatalf("owned header %q survived Strip: %q", name, h)
			}
		}
		for _, name := range []string{name1, name2} {
			if !IsOwnedHeader(name) && !g.extractor.Protected(name) && !hasName(h, name) {
				t.Fatalf("%q, neither owned nor a credential, was removed: %q", name, h)
			}
		}
		if allowed {
			c := g.extractor.Extract(h)
			// Other schemes stay; sent twice, they make the request's
			// credential invalid, which leaks nothing.
			otherSchemes := c.Source == SourceBearer && c.Kind == KindInvalid && !slices.ContainsFunc(h["Authorization"], isBearerScheme)
			if c.Kind != KindNone && !otherSchemes {
				t.Fatalf("after Strip a credential is left (%v from %q): %q", c.Kind, c.Name, h)
			}
		}
	})
}

func hasName(h HTTPHeader, name string) bool { _, ok := h[name]; return ok }

// FuzzEncodeHeaderValue checks that encoded values are printable ASCII a
// header can carry, and decode to the (cut) input.
func FuzzEncodeHeaderValue(f *testing.F) {
	f.Add("alice@example.com")
	f.Add("Zoë 100%")
	f.Add("a\r\nX-Auth-User-Id: forged")
	f.Add("\x00\x7f\xff")
	f.Add(strings.Repeat("é", MaxHeaderValue))
	f.Fuzz(func(t *testing.T, s string) {
		enc := EncodeHeaderValue(s)
		for i := 0; i < len(enc); i++ {
			if c := enc[i]; c < 0x20 || c > 0x7e {
				t.Fatalf("byte %#x at %d of %q", c, i, enc)
			}
		}
		dec, err := url.PathUnescape(enc)
		if err != nil {
			t.Fatalf("%q does not decode: %v", enc, err)
		}
		if len(dec) > MaxHeaderValue || !strings.HasPrefix(s, dec) {
			t.Fatalf("%q decodes to %q, not a prefix of the input of at most %d bytes", enc, dec, MaxHeaderValue)
		}
		if len(s) <= MaxHeaderValue && dec != s {
			t.Fatalf("%q decodes to %q, want %q", enc, dec, s)
		}
		if len(s) > MaxHeaderValue && len(dec) < MaxHeaderValue-utf8.UTFMax {
			t.Fatalf("%d bytes cut to %d", len(s), len(dec))
		}
		if strings.IndexByte(s, '%') < 0 && isPrintableASCII(s) && len(s) <= MaxHeaderValue && enc != s {
			t.Fatalf("printable %q changed into %q", s, enc)
		}
	})
}

func isPrintableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// FuzzVerifySignature checks that only the signer's own signature verifies
// (a signed value changed anywhere is refused, but for the equivalent
// spellings better-call accepts), and that parsing never panics.
func FuzzVerifySignature(f *testing.F) {
	f.Add("eF0pjcp0dTDLm4l4PXT3d4mb1V3qYDGc", uint16(0), byte('x'), "eF0pjcp0dTDLm4l4PXT3d4mb1V3qYDGc.tO3Y5Eo+5PsAWRqzwgw+BbQHQwv0CVtE/rgxkiBlzj8=")
	f.Add("tok", uint16(40), byte('A'), "tok.%2B%2F")
	f.Add("a.b", uint16(3), byte('_'), "a.b.c")
	f.Add("", uint16(1), byte('%'), ".")
	f.Fuzz(func(t *testing.T, token string, at uint16, b byte, arbitrary string) {
		s := NewSigner("fuzz-secret-fuzz-secret-fuzz-secret")
		// Arbitrary input never panics, and what verifies was signed.
		for _, verify := range []func(string) (string, bool){s.VerifyCookie, s.VerifyBearer} {
			if tok, ok := verify(arbitrary); ok {
				if !strings.HasPrefix(s.Sign(tok), tok+".") || !sameSignature(s, tok, arbitrary) {
					t.Fatalf("%q verified as %q", arbitrary, tok)
				}
			}
		}
		if token == "" || strings.ContainsAny(token, "%") {
			return
		}
		signed := s.Sign(token)
		if got, ok := s.VerifyCookie(signed); !ok || got != token {
			t.Fatalf("cookie %q: got %q %v", signed, got, ok)
		}
		if !strings.Contains(token, ".") {
			if got, ok := s.VerifyBearer(signed); !ok || got != token {
				t.Fatalf("bearer %q: got %q %v", signed, got, ok)
			}
		}
		i := int(at) % len(signed)
		if signed[i] == b {
			return
		}
		changed := signed[:i] + string(b) + signed[i+1:]
		if got, ok := s.VerifyCookie(changed); ok && (got != token || !sameSignature(s, got, changed)) {
			t.Fatalf("changed cookie %q verified as %q", changed, got)
		}
		if got, ok := s.VerifyBearer(changed); ok && (got != token || !sameSignature(s, got, changed)) {
			t.Fatalf("changed bearer %q verified as %q", changed, got)
		}
	})
}

// sameSignature reports whether v carries, after its token, the signature
// of token in one of the spellings better-call accepts: URL-encoded or not,
// standard or URL-safe base64, padded or not (and, as atob, whatever the
// unused low bits of the last character).
func sameSignature(s *Signer, token, v string) bool {
	if d, err := url.PathUnescape(v); err == nil {
		v = d
	}
	sig, ok := strings.CutPrefix(v, token+".")
	if !ok {
		return false
	}
	want, _ := base64.StdEncoding.DecodeString(s.Sign(token)[len(token)+1:])
	sig = strings.TrimRight(sig, "=")
	enc := base64.RawStdEncoding
	if strings.ContainsAny(sig, "-_") {
		enc = base64.RawURLEncoding
	}
	got, err := enc.DecodeString(sig)
	return err == nil && bytes.Equal(got, want)
}
