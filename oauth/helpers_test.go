package oauth_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/caddy-betterauth/caddy-betterauth/oauth"
)

const (
	testIssuer   = "http://localhost:3000/api/auth"
	testAudience = "https://mcp.example.com/mcp"
	testClient   = "likPCREjbhXzQrTcNBHireapaWgVRIxI"
	testUser     = "kDBn1FXpt3bqZZF5B5ik4631IfkCpL6r"
)

// testNow is the verifiers' clock in these tests.
var testNow = time.Unix(1_796_120_600, 0)

var algs = []string{oauth.EdDSA, oauth.ES256, oauth.ES512, oauth.RS256, oauth.PS256}

// signer holds a private key and signs tokens with it.
type signer struct {
	key  oauth.Key // the public half, kid "kid-<alg>"
	sign func(input []byte) []byte
}

var (
	signersMu sync.Mutex
	signers   = map[string]*signer{}
)

// signerFor returns a signer for alg, generated once per test binary (RSA
// keys are slow to make).
func signerFor(t testing.TB, alg string) *signer {
	t.Helper()
	signersMu.Lock()
	defer signersMu.Unlock()
	if s, ok := signers[alg]; ok {
		return s
	}
	s := newSigner(t, alg, "kid-"+alg)
	signers[alg] = s
	return s
}

func newSigner(t testing.TB, alg, kid string) *signer {
	t.Helper()
	s := &signer{key: oauth.Key{ID: kid, Alg: alg}}
	switch alg {
	case oauth.EdDSA:
		pub, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		s.key.Public = pub
		s.sign = func(in []byte) []byte { return ed25519.Sign(priv, in) }
	case oauth.ES256, oauth.ES512:
		curve, size := elliptic.P256(), 32
		if alg == oauth.ES512 {
			curve, size = elliptic.P521(), 66
		}
		priv, err := ecdsa.GenerateKey(curve, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		s.key.Public = &priv.PublicKey
		s.sign = func(in []byte) []byte {
			var digest []byte
			if alg == oauth.ES256 {
				h := sha256.Sum256(in)
				digest = h[:]
			} else {
				h := sha512.Sum512(in)
				digest = h[:]
			}
			r, ss, err := ecdsa.Sign(rand.Reader, priv, digest)
			if err != nil {
				t.Fatal(err)
			}
			out := make([]byte, 2*size)
			r.FillBytes(out[:size])
			ss.FillBytes(out[size:])
			return out
		}
	case oauth.RS256, oauth.PS256:
		priv, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		s.key.Public = &priv.PublicKey
		s.sign = func(in []byte) []byte {
			h := sha256.Sum256(in)
			var sig []byte
			var err error
			if alg == oauth.RS256 {
				sig, err = rsa.SignPKCS1v15(rand.Reader, priv, crypto.SHA256, h[:])
			} else {
				sig, err = rsa.SignPSS(rand.Reader, priv, crypto.SHA256, h[:], &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
			}
			if err != nil {
				t.Fatal(err)
			}
			return sig
		}
	default:
		t.Fatalf("no signer for %q", alg)
	}
	return s
}

// header and claims are a token's JSON objects; a nil value leaves the
// member out.
type object map[string]any

func (s *signer) header() object {
	return object{"typ": "at+jwt", "alg": s.key.Alg, "kid": s.key.ID}
}

// claims are those of a user's token from @better-auth/oauth-provider.
func claims() object {
	iat := testNow.Unix() - 60
	return object{
		"sub":       testUser,
		"aud":       testAudience,
		"client_id": testClient,
		"azp":       testClient,
		"scope":     "openid mcp:read",
		"sid":       "6WPySS59YZoy3DOxpVDrfbDTh33TEIYJ",
		"iss":       testIssuer,
		"iat":       iat,
		"exp":       iat + 3600,
		"jti":       "SwTNIwivAMSXxge6srw6e4K71HLd6vBY",
	}
}

func encode(t testing.TB, o object) string {
	t.Helper()
	m := map[string]any{}
	for k, v := range o {
		if v != nil {
			m[k] = v
		}
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// token signs header.claims.
func (s *signer) token(t testing.TB, header, claims object) string {
	t.Helper()
	input := encode(t, header) + "." + encode(t, claims)
	return input + "." + base64.RawURLEncoding.EncodeToString(s.sign([]byte(input)))
}

// keys holds the public key of every signer.
func keys(t testing.TB) oauth.StaticKeys {
	ks := oauth.StaticKeys{}
	for _, alg := range algs {
		k := signerFor(t, alg).key
		ks[k.ID] = k
	}
	return ks
}

func verifier(t testing.TB, cfg oauth.AccessTokenConfig) *oauth.AccessTokenVerifier {
	t.Helper()
	if cfg.Keys == nil {
		cfg.Keys = keys(t)
	}
	if cfg.Issuers == nil {
		cfg.Issuers = []string{testIssuer}
	}
	if cfg.Audience == "" && !cfg.AllowUnbound {
		cfg.Audience = testAudience
	}
	if cfg.Now == nil {
		cfg.Now = func() time.Time { return testNow }
	}
	v, err := oauth.NewAccessTokenVerifier(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return v
}
