package oauth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"time"
)

// The JWS algorithms (RFC 7518, RFC 8037) Better-Auth's jwt plugin signs
// with (jwks.keyPairConfig.alg): the only ones a Key can have.
const (
	EdDSA = "EdDSA" // Ed25519, Better-Auth's default
	ES256 = "ES256" // ECDSA P-256 with SHA-256
	ES512 = "ES512" // ECDSA P-521 with SHA-512
	RS256 = "RS256" // RSASSA-PKCS1-v1_5 with SHA-256
	PS256 = "PS256" // RSASSA-PSS with SHA-256
)

// RSA moduli outside these bounds are refused: below 2048 bits is too weak
// (RFC 7518 §3.3 asks for 2048), above 8192 only makes verification slow.
const (
	minRSABits = 2048
	maxRSABits = 8192
)

// ErrUnusableKey is the error (wrapped) for a key the verifier will not
// use: a type, curve or algorithm outside those above, a short RSA
// modulus, a key marked for encryption, or private key material. Tokens
// signed with such a key are invalid, not a backend failure.
var ErrUnusableKey = errors.New("oauth: unusable signing key")

// Key is a public key that verifies access tokens.
type Key struct {
	// ID is the key's kid: the id of its row in Better-Auth's jwks table.
	ID string
	// Alg is the one algorithm the key verifies (EdDSA, ES256, ES512,
	// RS256 or PS256). It comes from the key, never from a token.
	Alg string
	// Public is an ed25519.PublicKey, *ecdsa.PublicKey or *rsa.PublicKey.
	Public crypto.PublicKey
	// Expires is the row's expiresAt: when Better-Auth stopped signing
	// with the key (jwks.rotationInterval). Zero: never. CachedKeys keeps
	// verifying with it for a grace period after that, as Better-Auth's
	// /jwks endpoint keeps publishing it.
	Expires time.Time
}

// jwk is the JSON of a JWK (RFC 7517 §4, RFC 7518 §6, RFC 8037 §2).
type jwk struct {
	Kty    string   `json:"kty"`
	Kid    string   `json:"kid"`
	Alg    string   `json:"alg"`
	Use    string   `json:"use"`
	KeyOps []string `json:"key_ops"`
	Crv    string   `json:"crv"`
	X      string   `json:"x"`
	Y      string   `json:"y"`
	N      string   `json:"n"`
	E      string   `json:"e"`
	// Private members: their presence refuses the key. A "public" key
	// that carries its private half is a leak; nothing should verify
	// with it.
	D   json.RawMessage `json:"d"`
	P   json.RawMessage `json:"p"`
	Q   json.RawMessage `json:"q"`
	DP  json.RawMessage `json:"dp"`
	DQ  json.RawMessage `json:"dq"`
	QI  json.RawMessage `json:"qi"`
	Oth json.RawMessage `json:"oth"`
	K   json.RawMessage `json:"k"` // a symmetric (oct) key
}

func unusable(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrUnusableKey, fmt.Sprintf(format, args...))
}

// ParseJWK parses a public JWK: a member of a JWKS document, or the
// publicKey column of Better-Auth's jwks table. The key's ID is its kid
// member, if any.
//
// The algorithm is the key's own: its alg member, or for OKP and EC keys,
// which can sign with only one algorithm each, the one their curve implies
// (Ed25519: EdDSA, P-256: ES256, P-521: ES512). An RSA key must name RS256
// or PS256 in its alg member. Everything else is refused with an error
// wrapping ErrUnusableKey: none, HS*, other curves, RSA keys shorter than
// 2048 bits, keys whose use is not "sig" or whose key_ops lack "verify",
// and keys with private members.
func ParseJWK(data []byte) (Key, error) {
	var j jwk
	if err := json.Unmarshal(data, &j); err != nil {
		return Key{}, unusable("not a JWK: %v", err)
	}
	return j.key()
}

func (j *jwk) key() (Key, error) {
	if j.D != nil || j.P != nil || j.Q != nil || j.DP != nil || j.DQ != nil || j.QI != nil || j.Oth != nil || j.K != nil {
		return Key{}, unusable("the JWK holds private or symmetric key material")
	}
	if j.Use != "" && j.Use != "sig" {
		return Key{}, unusable("the JWK's use is %q, not sig", j.Use)
	}
	if j.KeyOps != nil && !slices.Contains(j.KeyOps, "verify") {
		return Key{}, unusable("the JWK's key_ops lack verify")
	}
	k := Key{ID: j.Kid}
	var err error
	switch j.Kty {
	case "OKP":
		k.Alg, k.Public, err = j.okp()
	case "EC":
		k.Alg, k.Public, err = j.ec()
	case "RSA":
		k.Alg, k.Public, err = j.rsa()
	default:
		return Key{}, unusable("key type %q", j.Kty)
	}
	if err != nil {
		return Key{}, err
	}
	if j.Alg != "" && j.Alg != k.Alg {
		return Key{}, unusable("a %s key cannot verify %q", j.Kty, j.Alg)
	}
	return k, nil
}

func (j *jwk) okp() (string, crypto.PublicKey, error) {
	if j.Crv != "Ed25519" {
		return "", nil, unusable("OKP curve %q", j.Crv)
	}
	x, err := decodeMember(j.X, "x")
	if err != nil {
		return "", nil, err
	}
	if len(x) != ed25519.PublicKeySize {
		return "", nil, unusable("an Ed25519 key is %d bytes, not %d", ed25519.PublicKeySize, len(x))
	}
	return EdDSA, ed25519.PublicKey(x), nil
}

func (j *jwk) ec() (string, crypto.PublicKey, error) {
	var curve elliptic.Curve
	var alg string
	switch j.Crv {
	case "P-256":
		curve, alg = elliptic.P256(), ES256
	case "P-521":
		curve, alg = elliptic.P521(), ES512
	default:
		return "", nil, unusable("EC curve %q", j.Crv)
	}
	size := (curve.Params().BitSize + 7) / 8
	x, err := decodeMember(j.X, "x")
	if err != nil {
		return "", nil, err
	}
	y, err := decodeMember(j.Y, "y")
	if err != nil {
		return "", nil, err
	}
	// RFC 7518 §6.2.1.2: the coordinates are exactly the curve's size.
	if len(x) != size || len(y) != size {
		return "", nil, unusable("%s coordinates are %d bytes", j.Crv, size)
	}
	point := make([]byte, 0, 1+2*size)
	point = append(append(append(point, 4), x...), y...)
	pub, err := ecdsa.ParseUncompressedPublicKey(curve, point)
	if err != nil {
		return "", nil, unusable("%s point: %v", j.Crv, err)
	}
	return alg, pub, nil
}

func (j *jwk) rsa() (string, crypto.PublicKey, error) {
	// Either algorithm verifies with an RSA key: which one the issuer
	// signs with only the key's alg can say.
	if j.Alg != RS256 && j.Alg != PS256 {
		return "", nil, unusable("an RSA key must name RS256 or PS256 as its alg, not %q", j.Alg)
	}
	n, err := decodeMember(j.N, "n")
	if err != nil {
		return "", nil, err
	}
	e, err := decodeMember(j.E, "e")
	if err != nil {
		return "", nil, err
	}
	mod := new(big.Int).SetBytes(n)
	if bits := mod.BitLen(); bits < minRSABits || bits > maxRSABits {
		return "", nil, unusable("an RSA modulus of %d bits (%d to %d accepted)", bits, minRSABits, maxRSABits)
	}
	if len(e) == 0 || len(e) > 4 {
		return "", nil, unusable("RSA exponent of %d bytes", len(e))
	}
	var exp int64
	for _, b := range e {
		exp = exp<<8 | int64(b)
	}
	if exp < 3 || exp > 1<<31-1 || exp%2 == 0 {
		return "", nil, unusable("RSA exponent %d", exp)
	}
	return j.Alg, &rsa.PublicKey{N: mod, E: int(exp)}, nil
}

func decodeMember(s, name string) ([]byte, error) {
	if s == "" {
		return nil, unusable("the JWK lacks %s", name)
	}
	b, err := b64.DecodeString(s)
	if err != nil {
		return nil, unusable("the JWK's %s is not base64url: %v", name, err)
	}
	return b, nil
}

// b64 is the base64url of JOSE (RFC 7515 §2): no padding, and strict, so
// that one value has one spelling.
var b64 = base64.RawURLEncoding.Strict()

// JWKRow is one row of Better-Auth's jwks table, its private key left out.
type JWKRow struct {
	// ID is the id column, the key's kid.
	ID string
	// PublicKey is the publicKey (public_key) column: the public JWK as
	// JSON, without kid or alg (better-auth 1.7 writes
	// {"crv":"Ed25519","x":"…","kty":"OKP"}).
	PublicKey string
	// Alg and Crv are the alg and crv columns, "" when NULL or absent
	// (rows written before better-auth added them).
	Alg, Crv string
	// ExpiresAt is the expiresAt column; zero when NULL.
	ExpiresAt time.Time
}

// Key parses the row's key as ParseJWK does, with the row's id as its kid
// and the alg column naming its algorithm. A NULL alg is Better-Auth's
// configured default algorithm, which the gateway cannot see: for an OKP
// or EC key it is the one its curve implies, and an RSA key without an alg
// is refused. An alg or crv column that contradicts the JWK refuses the
// key.
func (r JWKRow) Key() (Key, error) {
	var j jwk
	if err := json.Unmarshal([]byte(r.PublicKey), &j); err != nil {
		return Key{}, unusable("the publicKey of jwks row %q is not a JWK: %v", r.ID, err)
	}
	if r.Alg != "" {
		if j.Alg != "" && j.Alg != r.Alg {
			return Key{}, unusable("jwks row %q: alg column %q, JWK alg %q", r.ID, r.Alg, j.Alg)
		}
		j.Alg = r.Alg
	}
	if r.Crv != "" && r.Crv != j.Crv {
		return Key{}, unusable("jwks row %q: crv column %q, JWK crv %q", r.ID, r.Crv, j.Crv)
	}
	k, err := j.key()
	if err != nil {
		return Key{}, fmt.Errorf("jwks row %q: %w", r.ID, err)
	}
	k.ID, k.Expires = r.ID, r.ExpiresAt
	return k, nil
}

// MaxJWKSKeys is the most keys a JWKS document may hold. Better-Auth
// publishes one key per algorithm and rotation, a handful.
const MaxJWKSKeys = 100

// ParseJWKS parses a JWKS document (RFC 7517 §5) and returns its usable
// keys. Keys without a kid, unusable keys (see ParseJWK) and keys whose
// kid is shared with another are left out, so that one odd key does not
// cost the others; a document that is not a JWKS, or holds more than
// MaxJWKSKeys keys, is an error.
func ParseJWKS(data []byte) ([]Key, error) {
	var doc struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("oauth: not a JWKS document: %w", err)
	}
	if doc.Keys == nil {
		return nil, errors.New("oauth: not a JWKS document: no keys member")
	}
	if len(doc.Keys) > MaxJWKSKeys {
		return nil, fmt.Errorf("oauth: a JWKS document of %d keys (at most %d)", len(doc.Keys), MaxJWKSKeys)
	}
	keys := make([]Key, 0, len(doc.Keys))
	seen := make(map[string]int, len(doc.Keys))
	for _, raw := range doc.Keys {
		k, err := ParseJWK(raw)
		if err != nil || k.ID == "" {
			continue
		}
		seen[k.ID]++
		keys = append(keys, k)
	}
	return slices.DeleteFunc(keys, func(k Key) bool { return seen[k.ID] > 1 }), nil
}
