package oauth_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/caddy-betterauth/caddy-betterauth/oauth"
)

var enc = base64.RawURLEncoding.EncodeToString

// publicJWK is the JWK of a signer's key, as jose's exportJWK writes it.
func publicJWK(t testing.TB, k oauth.Key) map[string]any {
	t.Helper()
	switch pub := k.Public.(type) {
	case ed25519.PublicKey:
		return map[string]any{"kty": "OKP", "crv": "Ed25519", "x": enc(pub)}
	case *ecdsa.PublicKey:
		b, err := pub.Bytes()
		if err != nil {
			t.Fatal(err)
		}
		size := (len(b) - 1) / 2
		return map[string]any{"kty": "EC", "crv": pub.Params().Name, "x": enc(b[1 : 1+size]), "y": enc(b[1+size:])}
	case *rsa.PublicKey:
		return map[string]any{"kty": "RSA", "n": enc(pub.N.Bytes()), "e": enc(big.NewInt(int64(pub.E)).Bytes())}
	}
	t.Fatalf("no JWK for %T", k.Public)
	return nil
}

func marshal(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseJWK(t *testing.T) {
	for _, alg := range algs {
		t.Run(alg, func(t *testing.T) {
			want := signerFor(t, alg).key
			j := publicJWK(t, want)
			j["kid"], j["alg"], j["use"] = want.ID, alg, "sig"
			k, err := oauth.ParseJWK(marshal(t, j))
			if err != nil {
				t.Fatal(err)
			}
			if k.ID != want.ID || k.Alg != alg || !want.Public.(interface{ Equal(crypto.PublicKey) bool }).Equal(k.Public) {
				t.Errorf("got %+v", k)
			}
		})
	}
}

func TestParseJWKInfersTheAlgorithmOfOKPAndECKeys(t *testing.T) {
	for _, alg := range []string{oauth.EdDSA, oauth.ES256, oauth.ES512} {
		k, err := oauth.ParseJWK(marshal(t, publicJWK(t, signerFor(t, alg).key)))
		if err != nil || k.Alg != alg {
			t.Errorf("%s: %+v, %v", alg, k, err)
		}
	}
}

func TestParseJWKRefuses(t *testing.T) {
	ed := publicJWK(t, signerFor(t, oauth.EdDSA).key)
	es := publicJWK(t, signerFor(t, oauth.ES256).key)
	rs := publicJWK(t, signerFor(t, oauth.RS256).key)
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := p384.PublicKey.Bytes()
	short, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	offCurve := with(object(es), nil)
	y, _ := base64.RawURLEncoding.DecodeString(es["y"].(string))
	y[len(y)-1] ^= 1
	offCurve["y"] = enc(y)

	for name, j := range map[string]map[string]any{
		"alg none":                   with(object(ed), object{"alg": "none"}),
		"alg HS256":                  with(object(ed), object{"alg": "HS256"}),
		"an Ed25519 key named ES256": with(object(ed), object{"alg": "ES256"}),
		"a P-256 key named ES512":    with(object(es), object{"alg": "ES512"}),
		"a P-256 key named ES384":    with(object(es), object{"alg": "ES384"}),
		"an RSA key without alg":     rs,
		"an RSA key named RS512":     with(object(rs), object{"alg": "RS512"}),
		"an RSA key of 1024 bits":    {"kty": "RSA", "alg": "RS256", "n": enc(short.N.Bytes()), "e": "AQAB"},
		"an RSA exponent of 1":       with(object(rs), object{"alg": "RS256", "e": "AQ"}),
		"an even RSA exponent":       with(object(rs), object{"alg": "RS256", "e": "AQAA"}),
		"Ed448":                      with(object(ed), object{"crv": "Ed448"}),
		"X25519":                     with(object(ed), object{"crv": "X25519"}),
		"P-384":                      {"kty": "EC", "crv": "P-384", "x": enc(b[1:49]), "y": enc(b[49:])},
		"secp256k1":                  with(object(es), object{"crv": "secp256k1"}),
		"a point off the curve":      offCurve,
		"a short x":                  with(object(ed), object{"x": enc(make([]byte, 31))}),
		"a padded x":                 with(object(ed), object{"x": ed["x"].(string) + "="}),
		"no x":                       with(object(ed), object{"x": nil}),
		"an EC key without y":        with(object(es), object{"y": nil}),
		"an oct key":                 {"kty": "oct", "k": "c2VjcmV0"},
		"no kty":                     with(object(ed), object{"kty": nil}),
		"a private key":              with(object(ed), object{"d": enc(make([]byte, 32))}),
		"use enc":                    with(object(ed), object{"use": "enc"}),
		"key_ops without verify":     with(object(ed), object{"key_ops": []string{"encrypt"}}),
	} {
		t.Run(name, func(t *testing.T) {
			if k, err := oauth.ParseJWK(marshal(t, dropNil(j))); !errors.Is(err, oauth.ErrUnusableKey) {
				t.Errorf("ParseJWK = %+v, %v", k, err)
			}
		})
	}
	if _, err := oauth.ParseJWK([]byte(`not json`)); !errors.Is(err, oauth.ErrUnusableKey) {
		t.Errorf("not JSON: %v", err)
	}
}

func dropNil(m map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range m {
		if v != nil {
			out[k] = v
		}
	}
	return out
}

func TestJWKRowKey(t *testing.T) {
	ed := signerFor(t, oauth.EdDSA).key
	rs := signerFor(t, oauth.RS256).key
	es := signerFor(t, oauth.ES256).key
	edJWK := string(marshal(t, publicJWK(t, ed)))
	rsJWK := string(marshal(t, publicJWK(t, rs)))
	expires := time.Date(2026, 12, 1, 10, 22, 12, 12e6, time.UTC)

	k, err := oauth.JWKRow{ID: "row1", PublicKey: edJWK, Alg: "EdDSA", Crv: "Ed25519", ExpiresAt: expires}.Key()
	if err != nil || k.ID != "row1" || k.Alg != oauth.EdDSA || !k.Expires.Equal(expires) {
		t.Errorf("EdDSA row: %+v, %v", k, err)
	}
	// Rows from before the alg and crv columns: the curve says.
	if k, err := (oauth.JWKRow{ID: "row2", PublicKey: edJWK}).Key(); err != nil || k.Alg != oauth.EdDSA {
		t.Errorf("legacy EdDSA row: %+v, %v", k, err)
	}
	if k, err := (oauth.JWKRow{ID: "row3", PublicKey: rsJWK, Alg: "PS256"}).Key(); err != nil || k.Alg != oauth.PS256 {
		t.Errorf("PS256 row: %+v, %v", k, err)
	}
	// The kid is the row's, whatever the JWK says.
	withKid := string(marshal(t, with(object(publicJWK(t, ed)), object{"kid": "other"})))
	if k, err := (oauth.JWKRow{ID: "row4", PublicKey: withKid}).Key(); err != nil || k.ID != "row4" {
		t.Errorf("row with a kid in its JWK: %+v, %v", k, err)
	}

	for name, row := range map[string]oauth.JWKRow{
		"an RSA row without alg":                {ID: "r", PublicKey: rsJWK},
		"an alg column the key cannot do":       {ID: "r", PublicKey: edJWK, Alg: "ES256"},
		"an alg column unlike the JWK's":        {ID: "r", PublicKey: string(marshal(t, with(object(publicJWK(t, rs)), object{"alg": "RS256"}))), Alg: "PS256"},
		"a crv column unlike the JWK's":         {ID: "r", PublicKey: edJWK, Crv: "P-256"},
		"a P-256 key in an EdDSA row":           {ID: "r", PublicKey: string(marshal(t, publicJWK(t, es))), Alg: "EdDSA"},
		"an encrypted JWK (not a public JWK)":   {ID: "r", PublicKey: `"a1b2c3"`},
		"an empty publicKey":                    {ID: "r"},
		"a private JWK in the publicKey column": {ID: "r", PublicKey: string(marshal(t, with(object(publicJWK(t, ed)), object{"d": "AAAA"})))},
	} {
		if k, err := row.Key(); !errors.Is(err, oauth.ErrUnusableKey) {
			t.Errorf("%s: %+v, %v", name, k, err)
		}
	}
}

func TestParseJWKS(t *testing.T) {
	var list []any
	for _, alg := range algs {
		k := signerFor(t, alg).key
		j := publicJWK(t, k)
		j["kid"], j["alg"] = k.ID, alg
		list = append(list, j)
	}
	list = append(list,
		map[string]any{"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"},                 // unusable: skipped
		with(object(publicJWK(t, signerFor(t, oauth.EdDSA).key)), object{"kid": ""}), // no kid: skipped
		map[string]any{"kty": "OKP", "crv": "Ed25519", "x": enc(make([]byte, 32)), "kid": "twice"},
		map[string]any{"kty": "OKP", "crv": "Ed25519", "x": enc(make([]byte, 32)), "kid": "twice"}, // ambiguous: both dropped
	)
	keys, err := oauth.ParseJWKS(marshal(t, map[string]any{"keys": list}))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, k := range keys {
		got = append(got, k.ID+":"+k.Alg)
	}
	if want := "kid-EdDSA:EdDSA kid-ES256:ES256 kid-ES512:ES512 kid-RS256:RS256 kid-PS256:PS256"; strings.Join(got, " ") != want {
		t.Errorf("got %v, want %v", got, want)
	}

	many := make([]any, oauth.MaxJWKSKeys+1)
	for i := range many {
		many[i] = map[string]any{"kty": "OKP", "crv": "Ed25519", "x": enc(make([]byte, 32)), "kid": fmt.Sprint(i)}
	}
	for name, doc := range map[string]string{
		"not JSON":        "<html>",
		"no keys member":  `{"keyz":[]}`,
		"keys not a list": `{"keys":{}}`,
		"too many keys":   string(marshal(t, map[string]any{"keys": many})),
	} {
		if _, err := oauth.ParseJWKS([]byte(doc)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
