package oauth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
)

// MaxTokenLength bounds the tokens Verify decodes. A Better-Auth access
// token is well under 1 KiB (an RS256 one with two audiences about 900
// bytes); 8 KiB leaves room for custom claims and refuses garbage before
// any work.
const MaxTokenLength = 8 << 10

// verify reports whether sig is k's signature of input with k.Alg.
func (k *Key) verify(input, sig []byte) bool {
	switch pub := k.Public.(type) {
	case ed25519.PublicKey:
		return k.Alg == EdDSA && len(pub) == ed25519.PublicKeySize && ed25519.Verify(pub, input, sig)
	case *ecdsa.PublicKey:
		var digest []byte
		switch {
		case k.Alg == ES256 && pub.Curve == elliptic.P256():
			h := sha256.Sum256(input)
			digest = h[:]
		case k.Alg == ES512 && pub.Curve == elliptic.P521():
			h := sha512.Sum512(input)
			digest = h[:]
		default:
			return false
		}
		// RFC 7518 §3.4: R and S, each exactly the curve's size.
		size := (pub.Params().BitSize + 7) / 8
		if len(sig) != 2*size {
			return false
		}
		return ecdsa.VerifyASN1(pub, digest, asn1Signature(sig[:size], sig[size:]))
	case *rsa.PublicKey:
		h := sha256.Sum256(input)
		switch k.Alg {
		case RS256:
			return rsa.VerifyPKCS1v15(pub, crypto.SHA256, h[:], sig) == nil
		case PS256:
			// RFC 7518 §3.5: the salt is as long as the hash.
			return rsa.VerifyPSS(pub, crypto.SHA256, h[:], sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash}) == nil
		}
	}
	return false
}

// asn1Signature encodes the ECDSA signature (r, s), big-endian unsigned
// integers of at most 66 bytes (P-521), as the DER
// SEQUENCE { INTEGER r, INTEGER s } that ecdsa.VerifyASN1 reads.
func asn1Signature(r, s []byte) []byte {
	r, s = trimInteger(r), trimInteger(s)
	n := integerLen(r) + integerLen(s) // at most 2×69: one length byte
	out := make([]byte, 0, 3+n)
	out = append(out, 0x30) // SEQUENCE
	if n >= 0x80 {
		out = append(out, 0x81) // the long form, one byte of length
	}
	out = append(out, byte(n))
	return appendInteger(appendInteger(out, r), s)
}

func trimInteger(b []byte) []byte {
	for len(b) > 1 && b[0] == 0 {
		b = b[1:]
	}
	return b
}

// integerLen is the length of b's DER INTEGER: a 0 byte goes before a high
// bit that would make it negative.
func integerLen(b []byte) int {
	if b[0]&0x80 != 0 {
		return 3 + len(b)
	}
	return 2 + len(b)
}

func appendInteger(out, b []byte) []byte {
	out = append(out, 0x02, byte(integerLen(b)-2))
	if b[0]&0x80 != 0 {
		out = append(out, 0)
	}
	return append(out, b...)
}
