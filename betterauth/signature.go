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
	pool sync.Pool // of *macState
}

// macState is a keyed HMAC with scratch space, pooled so that checking a
// signature allocates nothing.
type macState struct {
	h   hash.Hash
	in  []byte
	sum []byte
}

// NewSigner returns a Signer for secret, or nil when secret is empty (then
// no signed token verifies).
func NewSigner(secret string) *Signer {
	if secret == "" {
		return nil
	}
	key := []byte(secret)
	s := &Signer{}
	s.pool.New = func() any {
		return &macState{h: hmac.New(sha256.New, key), in: make([]byte, 0, 64), sum: make([]byte, 0, sha256.Size)}
	}
	return s
}

// Sign returns the signed form of token, "<token>.<base64 signature>", as
// Better-Auth's set-auth-token header carries it.
func (s *Signer) Sign(token string) string {
	st := s.mac(token)
	defer s.pool.Put(st)
	return token + "." + base64.StdEncoding.EncodeToString(st.sum)
}

// mac computes HMAC(secret, token) into st.sum; put st back when done.
func (s *Signer) mac(token string) *macState {
	st := s.pool.Get().(*macState)
	st.in = append(st.in[:0], token...)
	st.h.Reset()
	st.h.Write(st.in)
	st.sum = st.h.Sum(st.sum[:0])
	return st
}

// VerifyCookie unsigns a session cookie value the way better-call's
// getSignedCookie does: URL-decode, split at the last '.', require a
// 44-character signature ending in '=', compare in constant time.
func (s *Signer) VerifyCookie(v string) (token string, ok bool) {
	v, ok = unescape(v)
	if s == nil || !ok {
		return "", false
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
	v, ok = unescape(v)
	if s == nil || !ok {
		return "", false
	}
	token, sig, found := strings.Cut(v, ".")
	if !found || token == "" {
		return "", false
	}
	return token, s.check(token, sig)
}

// unescape URL-decodes v as decodeURIComponent does ('+' stays '+').
func unescape(v string) (string, bool) {
	if strings.IndexByte(v, '%') < 0 {
		return v, true
	}
	d, err := url.PathUnescape(v)
	return d, err == nil
}

func (s *Signer) check(token, sig string) bool {
	sig = strings.TrimRight(sig, "=")
	for i := 0; i < len(sig); i++ {
		// Go's decoder skips CR and LF (a cookie's %0D%0A, unescaped):
		// only the alphabet, so that a signature has one spelling.
		if c := sig[i]; !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '+' || c == '/' || c == '-' || c == '_') {
			return false
		}
	}
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
	st := s.mac(token)
	defer s.pool.Put(st)
	return hmac.Equal(got[:n], st.sum)
}
