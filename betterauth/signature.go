package betterauth

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"hash"
	"net/url"
	"strings"
	"sync"
)

// Signer checks Better-Auth's signed session tokens, "<token>.<signature>",
// where the signature is base64(HMAC-SHA256(secret, token)) as better-call
// writes it. With secret rotation Better-Auth signs cookies with the first
// secret only, so one secret is enough.
type Signer struct {
	pool sync.Pool // of hash.Hash keyed with the secret
}

// NewSigner returns a Signer for secret, or nil when secret is empty (then
// no signed token verifies).
func NewSigner(secret string) *Signer {
	if secret == "" {
		return nil
	}
	key := []byte(secret)
	s := &Signer{}
	s.pool.New = func() any { return hmac.New(sha256.New, key) }
	return s
}

// Sign returns the signed form of token, "<token>.<base64 signature>", as
// Better-Auth's set-auth-token header carries it.
func (s *Signer) Sign(token string) string {
	var mac [sha256.Size]byte
	s.mac(token, mac[:0])
	return token + "." + base64.StdEncoding.EncodeToString(mac[:])
}

func (s *Signer) mac(token string, dst []byte) []byte {
	h := s.pool.Get().(hash.Hash)
	h.Reset()
	h.Write([]byte(token))
	dst = h.Sum(dst)
	s.pool.Put(h)
	return dst
}

// VerifyCookie unsigns a session cookie value the way better-call's
// getSignedCookie does: URL-decode, split at the last '.', require a
// 44-character signature ending in '=', compare in constant time.
func (s *Signer) VerifyCookie(v string) (token string, ok bool) {
	if s == nil {
		return "", false
	}
	if strings.IndexByte(v, '%') >= 0 {
		d, err := url.PathUnescape(v)
		if err != nil {
			return "", false
		}
		v = d
	}
	i := strings.LastIndexByte(v, '.')
	if i <= 0 {
		return "", false
	}
	token, sig := v[:i], v[i+1:]
	if len(sig) != 44 || sig[43] != '=' {
		return "", false
	}
	return token, s.check(token, sig)
}

// VerifyBearer unsigns a bearer value the way Better-Auth's bearer plugin
// does: URL-decode when it contains '%', split at the first '.', and accept
// the signature in standard or URL-safe base64.
func (s *Signer) VerifyBearer(v string) (token string, ok bool) {
	if s == nil {
		return "", false
	}
	if strings.IndexByte(v, '%') >= 0 {
		d, err := url.PathUnescape(v)
		if err != nil {
			return "", false
		}
		v = d
	}
	token, sig, found := strings.Cut(v, ".")
	if !found || token == "" {
		return "", false
	}
	return token, s.check(token, sig)
}

func (s *Signer) check(token, sig string) bool {
	sig = strings.TrimRight(sig, "=")
	enc := base64.RawStdEncoding
	if strings.ContainsAny(sig, "-_") {
		enc = base64.RawURLEncoding
	}
	var got [sha256.Size + 3]byte // room for a malformed, longer input
	if enc.DecodedLen(len(sig)) > len(got) {
		return false
	}
	n, err := enc.Decode(got[:], []byte(sig))
	if err != nil || n != sha256.Size {
		return false
	}
	var want [sha256.Size]byte
	s.mac(token, want[:0])
	return hmac.Equal(got[:n], want[:])
}
