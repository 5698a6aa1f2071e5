package oauth_test

import (
	"context"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddy-betterauth/caddy-betterauth/betterauth"
	"github.com/caddy-betterauth/caddy-betterauth/oauth"
)

func TestVerifyAcceptsEachAlgorithm(t *testing.T) {
	v := verifier(t, oauth.AccessTokenConfig{})
	for _, alg := range algs {
		t.Run(alg, func(t *testing.T) {
			s := signerFor(t, alg)
			c := claims()
			at, err := v.Verify(context.Background(), s.token(t, s.header(), c))
			if err != nil {
				t.Fatal(err)
			}
			want := oauth.AccessToken{
				Subject:   testUser,
				ClientID:  testClient,
				SessionID: "6WPySS59YZoy3DOxpVDrfbDTh33TEIYJ",
				JTI:       "SwTNIwivAMSXxge6srw6e4K71HLd6vBY",
				Issuer:    testIssuer,
				Audience:  []string{testAudience},
				Scopes:    []string{"openid", "mcp:read"},
				ExpiresAt: time.Unix(c["exp"].(int64), 0),
				IssuedAt:  time.Unix(c["iat"].(int64), 0),
				KeyID:     s.key.ID,
			}
			if !reflect.DeepEqual(at, want) {
				t.Errorf("got  %+v\nwant %+v", at, want)
			}
			if id, ok := at.User(); !ok || id != testUser {
				t.Errorf("User() = %q, %v", id, ok)
			}
			if !at.HasScope("mcp:read") || at.HasScope("mcp") {
				t.Error("HasScope")
			}
		})
	}
}

// with returns o with the members of changes set (nil removes one).
func with(o object, changes object) object {
	out := object{}
	for k, v := range o {
		out[k] = v
	}
	for k, v := range changes {
		out[k] = v
	}
	return out
}

func TestVerifyRefuses(t *testing.T) {
	ed := signerFor(t, oauth.EdDSA)
	es := signerFor(t, oauth.ES256)
	rs := signerFor(t, oauth.RS256)
	ps := signerFor(t, oauth.PS256)
	now := testNow.Unix()
	leeway := int64(oauth.DefaultLeeway / time.Second)
	good := ed.token(t, ed.header(), claims())
	parts := strings.Split(good, ".")
	b64 := base64.RawURLEncoding.EncodeToString

	hs256 := func(secret []byte) string {
		input := encode(t, object{"typ": "at+jwt", "alg": "HS256", "kid": ed.key.ID}) + "." + encode(t, claims())
		m := hmac.New(sha256.New, secret)
		m.Write([]byte(input))
		return input + "." + b64(m.Sum(nil))
	}
	flip := func(part string) string {
		b, _ := base64.RawURLEncoding.DecodeString(part)
		b[len(b)/2] ^= 1
		return b64(b)
	}

	for _, tt := range []struct {
		name, token, reason string
	}{
		// Shape.
		{"two parts", parts[0] + "." + parts[1], "malformed"},
		{"four parts", good + ".x", "malformed"},
		{"empty", "", "malformed"},
		{"header not base64url", "!" + good[1:], "malformed"},
		{"padded header", parts[0] + "=." + parts[1] + "." + parts[2], "malformed"},
		{"header not JSON", b64([]byte("typ")) + "." + parts[1] + "." + parts[2], "malformed"},
		{"header an array", b64([]byte(`["at+jwt"]`)) + "." + parts[1] + "." + parts[2], "malformed"},
		{"header null", b64([]byte(`null`)) + "." + parts[1] + "." + parts[2], "malformed"},
		{"no signature", parts[0] + "." + parts[1] + ".", "malformed"},
		{"signature not canonical base64url", parts[0] + "." + parts[1] + "." + parts[2][:len(parts[2])-1] + "B", "malformed"},
		{"oversized", ed.token(t, ed.header(), with(claims(), object{"pad": strings.Repeat("x", oauth.MaxTokenLength)})), "oversized"},
		{"payload an array", signRaw(t, ed, ed.header(), `["x"]`), "malformed"},

		// Header.
		{"no typ (a session JWT)", ed.token(t, with(ed.header(), object{"typ": nil}), claims()), "typ"},
		{"typ JWT", ed.token(t, with(ed.header(), object{"typ": "JWT"}), claims()), "typ"},
		{"typ not a string", ed.token(t, with(ed.header(), object{"typ": 1}), claims()), "typ"},
		{"typ in another case of member name", ed.token(t, with(ed.header(), object{"typ": nil, "Typ": "at+jwt"}), claims()), "typ"},
		{"alg none, unsigned", encode(t, with(ed.header(), object{"alg": "none"})) + "." + encode(t, claims()) + ".", "alg"},
		{"alg none, signed", ed.token(t, with(ed.header(), object{"alg": "none"}), claims()), "alg"},
		{"HS256 with the public key as secret", hs256(ed.key.Public.(ed25519.PublicKey)), "alg"},
		{"HS256 with a secret", hs256([]byte("secret")), "alg"},
		{"no alg", ed.token(t, with(ed.header(), object{"alg": nil}), claims()), "alg"},
		{"ES256 header on an EdDSA key", es.token(t, with(es.header(), object{"kid": ed.key.ID}), claims()), "alg"},
		{"EdDSA header on an ES256 key", ed.token(t, with(ed.header(), object{"kid": es.key.ID}), claims()), "alg"},
		{"RS256 header on a PS256 key", rs.token(t, with(rs.header(), object{"kid": ps.key.ID}), claims()), "alg"},
		{"PS256 header on an RS256 key", ps.token(t, with(ps.header(), object{"kid": rs.key.ID}), claims()), "alg"},
		{"no kid", ed.token(t, with(ed.header(), object{"kid": nil}), claims()), "kid"},
		{"empty kid", ed.token(t, with(ed.header(), object{"kid": ""}), claims()), "kid"},
		{"overlong kid", ed.token(t, with(ed.header(), object{"kid": strings.Repeat("k", 257)}), claims()), "kid"},
		{"unknown kid", ed.token(t, with(ed.header(), object{"kid": "nope"}), claims()), "unknown_key"},
		{"crit", ed.token(t, with(ed.header(), object{"crit": []string{"exp"}}), claims()), "header"},
		{"jku", ed.token(t, with(ed.header(), object{"jku": "https://evil.example/jwks"}), claims()), "header"},
		{"x5u", ed.token(t, with(ed.header(), object{"x5u": "https://evil.example/cert"}), claims()), "header"},
		{"x5c", ed.token(t, with(ed.header(), object{"x5c": []string{"MII"}}), claims()), "header"},
		{"jwk", ed.token(t, with(ed.header(), object{"jwk": map[string]string{"kty": "OKP"}}), claims()), "header"},

		// Signature.
		{"tampered payload", parts[0] + "." + encode(t, with(claims(), object{"sub": "admin"})) + "." + parts[2], "signature"},
		{"tampered signature", parts[0] + "." + parts[1] + "." + flip(parts[2]), "signature"},
		{"signature of another key", parts[0] + "." + parts[1] + "." + b64(newSigner(t, oauth.EdDSA, ed.key.ID).sign([]byte(parts[0]+"."+parts[1]))), "signature"},
		{"short ES256 signature", signRawSig(t, es, []byte{1, 2, 3}), "signature"},

		// Claims.
		{"wrong iss", ed.token(t, ed.header(), with(claims(), object{"iss": "https://evil.example/api/auth"})), "iss"},
		{"iss the origin (a session JWT's)", ed.token(t, ed.header(), with(claims(), object{"iss": "http://localhost:3000"})), "iss"},
		{"iss with a trailing slash", ed.token(t, ed.header(), with(claims(), object{"iss": testIssuer + "/"})), "iss"},
		{"no iss", ed.token(t, ed.header(), with(claims(), object{"iss": nil})), "iss"},
		{"no exp", ed.token(t, ed.header(), with(claims(), object{"exp": nil})), "exp"},
		{"exp a string", ed.token(t, ed.header(), with(claims(), object{"exp": "9999999999"})), "exp"},
		{"exp huge", ed.token(t, ed.header(), with(claims(), object{"exp": 1e300})), "exp"},
		{"expired beyond the leeway", ed.token(t, ed.header(), with(claims(), object{"exp": now - leeway - 1})), "exp"},
		{"expired at exactly the leeway", ed.token(t, ed.header(), with(claims(), object{"exp": now - leeway})), "exp"},
		{"no iat", ed.token(t, ed.header(), with(claims(), object{"iat": nil})), "iat"},
		{"iat beyond the leeway", ed.token(t, ed.header(), with(claims(), object{"iat": now + leeway + 1})), "iat"},
		{"nbf beyond the leeway", ed.token(t, ed.header(), with(claims(), object{"nbf": now + leeway + 1})), "nbf"},
		{"nbf a string", ed.token(t, ed.header(), with(claims(), object{"nbf": "0"})), "nbf"},
		{"no aud", ed.token(t, ed.header(), with(claims(), object{"aud": nil})), "aud"},
		{"another aud", ed.token(t, ed.header(), with(claims(), object{"aud": "https://other.example.com/mcp"})), "aud"},
		{"aud a prefix of the resource", ed.token(t, ed.header(), with(claims(), object{"aud": "https://mcp.example.com"})), "aud"},
		{"aud an array of others", ed.token(t, ed.header(), with(claims(), object{"aud": []string{"https://a.example", "https://b.example"}})), "aud"},
		{"aud an empty array", ed.token(t, ed.header(), with(claims(), object{"aud": []string{}})), "aud"},
		{"aud a number", ed.token(t, ed.header(), with(claims(), object{"aud": 1})), "aud"},
		{"no sub", ed.token(t, ed.header(), with(claims(), object{"sub": nil})), "sub"},
		{"empty sub", ed.token(t, ed.header(), with(claims(), object{"sub": ""})), "sub"},
		{"no azp, no client_id (a session JWT's claims)", ed.token(t, ed.header(), with(claims(), object{"azp": nil, "client_id": nil})), "client_id"},
		{"azp and client_id differ", ed.token(t, ed.header(), with(claims(), object{"client_id": "other"})), "client_id"},
		{"azp not a string", ed.token(t, ed.header(), with(claims(), object{"azp": []string{testClient}})), "client_id"},
		{"DPoP-bound", ed.token(t, ed.header(), with(claims(), object{"cnf": map[string]string{"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"}})), "cnf"},
		{"scope not a string", ed.token(t, ed.header(), with(claims(), object{"scope": []string{"mcp:read"}})), "scope"},
		{"sid not a string", ed.token(t, ed.header(), with(claims(), object{"sid": 1})), "sid"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			v := verifier(t, oauth.AccessTokenConfig{})
			at, err := v.Verify(context.Background(), tt.token)
			var te *oauth.TokenError
			if !errors.As(err, &te) || !errors.Is(err, oauth.ErrInvalidToken) {
				t.Fatalf("Verify = %+v, %v; want a token error %q", at, err, tt.reason)
			}
			if te.Reason != tt.reason {
				t.Errorf("reason %q, want %q (%v)", te.Reason, tt.reason, err)
			}
			if strings.Contains(err.Error(), tt.token) && tt.token != "" {
				t.Error("the error holds the token")
			}
		})
	}
}

// signRaw signs a token whose payload is raw JSON.
func signRaw(t *testing.T, s *signer, header object, payload string) string {
	input := encode(t, header) + "." + base64.RawURLEncoding.EncodeToString([]byte(payload))
	return input + "." + base64.RawURLEncoding.EncodeToString(s.sign([]byte(input)))
}

// signRawSig is a token of s with sig as its signature.
func signRawSig(t *testing.T, s *signer, sig []byte) string {
	return encode(t, s.header()) + "." + encode(t, claims()) + "." + base64.RawURLEncoding.EncodeToString(sig)
}

func TestVerifyAccepts(t *testing.T) {
	ed := signerFor(t, oauth.EdDSA)
	now := testNow.Unix()
	leeway := int64(oauth.DefaultLeeway / time.Second)
	for _, tt := range []struct {
		name           string
		header, claims object
	}{
		{"typ in capitals", with(ed.header(), object{"typ": "AT+JWT"}), claims()},
		{"typ as a media type", with(ed.header(), object{"typ": "application/at+jwt"}), claims()},
		{"expired within the leeway", ed.header(), with(claims(), object{"exp": now - leeway + 1})},
		{"iat within the leeway", ed.header(), with(claims(), object{"iat": now + leeway})},
		{"nbf within the leeway", ed.header(), with(claims(), object{"nbf": now + leeway})},
		{"fractional dates", ed.header(), with(claims(), object{"iat": float64(now) - 0.5, "exp": float64(now) + 0.5})},
		{"aud an array holding the resource", ed.header(), with(claims(), object{"aud": []string{testAudience, testIssuer + "/oauth2/userinfo"}})},
		{"client_id only", ed.header(), with(claims(), object{"azp": nil})},
		{"azp only", ed.header(), with(claims(), object{"client_id": nil})},
		{"cnf null", ed.header(), with(claims(), object{"cnf": nil})},
		{"no scope, sid or jti", ed.header(), with(claims(), object{"scope": nil, "sid": nil, "jti": nil})},
		{"unknown header and claims", with(ed.header(), object{"cty": "x"}), with(claims(), object{"Sub": "x", "role": "admin"})},
	} {
		t.Run(tt.name, func(t *testing.T) {
			at, err := verifier(t, oauth.AccessTokenConfig{}).Verify(context.Background(), ed.token(t, tt.header, tt.claims))
			if err != nil {
				t.Fatal(err)
			}
			if at.Subject != testUser || at.ClientID != testClient {
				t.Errorf("%+v", at)
			}
		})
	}
}

func TestLeeway(t *testing.T) {
	ed := signerFor(t, oauth.EdDSA)
	expired := ed.token(t, ed.header(), with(claims(), object{"exp": testNow.Unix() - 10}))
	for _, tt := range []struct {
		leeway time.Duration
		ok     bool
	}{
		{0, true}, // the default, 30 s
		{-1, false},
		{5 * time.Second, false},
		{11 * time.Second, true},
	} {
		_, err := verifier(t, oauth.AccessTokenConfig{Leeway: tt.leeway}).Verify(context.Background(), expired)
		if (err == nil) != tt.ok {
			t.Errorf("leeway %v: %v", tt.leeway, err)
		}
	}
}

func TestAllowUnbound(t *testing.T) {
	ed := signerFor(t, oauth.EdDSA)
	noAud := ed.token(t, ed.header(), with(claims(), object{"aud": nil}))
	other := ed.token(t, ed.header(), with(claims(), object{"aud": "https://other.example.com/mcp"}))
	ours := ed.token(t, ed.header(), claims())
	for _, tt := range []struct {
		name     string
		audience string
		want     map[string]bool
	}{
		{"with the audience", testAudience, map[string]bool{noAud: true, other: false, ours: true}},
		{"without an audience", "", map[string]bool{noAud: true, other: true, ours: true}},
	} {
		v := verifier(t, oauth.AccessTokenConfig{Audience: tt.audience, AllowUnbound: true})
		for tok, ok := range tt.want {
			if _, err := v.Verify(context.Background(), tok); (err == nil) != ok {
				t.Errorf("%s: %v", tt.name, err)
			}
		}
	}
}

func TestMachineToMachineHasNoUser(t *testing.T) {
	ed := signerFor(t, oauth.EdDSA)
	// client_credentials: sub is the client, no sid.
	at, err := verifier(t, oauth.AccessTokenConfig{}).Verify(context.Background(),
		ed.token(t, ed.header(), with(claims(), object{"sub": testClient, "sid": nil})))
	if err != nil {
		t.Fatal(err)
	}
	if id, ok := at.User(); ok || id != "" {
		t.Errorf("User() = %q, %v", id, ok)
	}
	// A sid does not make a client a user.
	at, err = verifier(t, oauth.AccessTokenConfig{}).Verify(context.Background(),
		ed.token(t, ed.header(), with(claims(), object{"sub": testClient})))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := at.User(); ok {
		t.Error("a token whose sub is its client has a user")
	}
}

func TestKeySourceErrors(t *testing.T) {
	ed := signerFor(t, oauth.EdDSA)
	tok := ed.token(t, ed.header(), claims())
	down := errors.New("database down")
	for _, tt := range []struct {
		name    string
		err     error
		invalid bool
	}{
		{"not found", oauth.ErrKeyNotFound, true},
		{"wrapped not found", errors.Join(errors.New("row gone"), oauth.ErrKeyNotFound), true},
		{"unusable", oauth.ErrUnusableKey, true},
		{"backend failure", down, false},
		{"cancelled", context.Canceled, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			v := verifier(t, oauth.AccessTokenConfig{Keys: oauth.KeyFunc(func(context.Context, string) (oauth.Key, error) {
				return oauth.Key{}, tt.err
			})})
			_, err := v.Verify(context.Background(), tok)
			if err == nil || errors.Is(err, oauth.ErrInvalidToken) != tt.invalid || !errors.Is(err, tt.err) {
				t.Errorf("Verify: %v", err)
			}
		})
	}
}

// The key source sees no token the header alone refuses.
func TestHeaderIsCheckedBeforeTheKeySource(t *testing.T) {
	ed := signerFor(t, oauth.EdDSA)
	calls := 0
	v := verifier(t, oauth.AccessTokenConfig{Keys: oauth.KeyFunc(func(context.Context, string) (oauth.Key, error) {
		calls++
		return ed.key, nil
	})})
	for _, h := range []object{with(ed.header(), object{"typ": nil}), with(ed.header(), object{"alg": "HS256"}), with(ed.header(), object{"jku": "x"})} {
		if _, err := v.Verify(context.Background(), ed.token(t, h, claims())); err == nil {
			t.Error("accepted")
		}
	}
	if calls != 0 {
		t.Errorf("%d key lookups", calls)
	}
}

func TestNewAccessTokenVerifierChecksItsConfig(t *testing.T) {
	ks := oauth.StaticKeys{}
	for _, cfg := range []oauth.AccessTokenConfig{
		{Issuers: []string{testIssuer}, Audience: testAudience},
		{Keys: ks, Audience: testAudience},
		{Keys: ks, Issuers: []string{""}, Audience: testAudience},
		{Keys: ks, Issuers: []string{testIssuer}},
		{Keys: ks, Issuers: []string{testIssuer}, Audience: testAudience, Leeway: time.Hour},
	} {
		if _, err := oauth.NewAccessTokenVerifier(cfg); err == nil {
			t.Errorf("%+v accepted", cfg)
		}
	}
}

func TestLooksLikeJWT(t *testing.T) {
	ed := signerFor(t, oauth.EdDSA)
	for s, want := range map[string]bool{
		ed.token(t, ed.header(), claims()):   true,
		"eyJhbGciOiJub25lIn0.e30.":           true,
		"eyJhbGciOiJub25lIn0.e30":            false,
		"eyJ.a.b.c":                          false,
		"abc.def.ghi":                        false,
		"ba_sgcryLxAZNSEehSEODGkbVrwreJKkSs": false,
		"eyJ a.b.c":                          false,
		"eyJhbGc=.e30.x":                     false,
		"eyJ" + strings.Repeat("a", oauth.MaxTokenLength) + "..": false,
	} {
		if got := betterauth.LooksLikeJWT(s); got != want {
			t.Errorf("LooksLikeJWT(%.40q) = %v", s, got)
		}
	}
}

// Claims are read as JSON, escapes and all: the issuer spelled with
// escaped slashes (as PHP writes it) is still the issuer.
func TestVerifyReadsClaimsAsJSON(t *testing.T) {
	ed := signerFor(t, oauth.EdDSA)
	iat := testNow.Unix() - 60
	payload := `{"iss":"http:\/\/localhost:3000\/api\/\u0061uth","sub":"` + testUser + `","aud":["` + testAudience + `"],` +
		`"azp":"` + testClient + `","scope":"mcp:read\u0020openid","iat":` + strconv.FormatInt(iat, 10) + `,"exp":1.8e9}`
	at, err := verifier(t, oauth.AccessTokenConfig{}).Verify(context.Background(), signRaw(t, ed, ed.header(), payload))
	if err != nil {
		t.Fatal(err)
	}
	if at.Issuer != testIssuer || strings.Join(at.Scopes, ",") != "mcp:read,openid" || at.ExpiresAt.Unix() != 1_800_000_000 {
		t.Errorf("%+v", at)
	}
	// A control character is not JSON.
	bad := strings.Replace(payload, `"sub":"`, "\"sub\":\"\x01", 1)
	var te *oauth.TokenError
	if _, err := verifier(t, oauth.AccessTokenConfig{}).Verify(context.Background(), signRaw(t, ed, ed.header(), bad)); !errors.As(err, &te) || te.Reason != "malformed" {
		t.Errorf("a control character: %v", err)
	}
}

// A Key built by hand with a curve its algorithm does not use verifies
// nothing.
func TestKeyOfTheWrongCurve(t *testing.T) {
	es512 := signerFor(t, oauth.ES512)
	odd := es512.key
	odd.Alg = oauth.ES256
	v := verifier(t, oauth.AccessTokenConfig{Keys: oauth.NewStaticKeys(odd)})
	var te *oauth.TokenError
	if _, err := v.Verify(context.Background(), es512.token(t, with(es512.header(), object{"alg": oauth.ES256}), claims())); !errors.As(err, &te) || te.Reason != "signature" {
		t.Errorf("Verify: %v", err)
	}
}
