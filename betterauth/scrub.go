package betterauth

import "strings"

// HeaderEditor is a request's headers as a front end changes them before the
// request goes on. Names are passed in canonical form ("X-Api-Key",
// "Authorization", "Cookie").
type HeaderEditor interface {
	HeaderGetter
	Del(name string)
	Set(name, value string)
}

// Del implements HeaderEditor.
func (h HTTPHeader) Del(name string) { delete(h, name) }

// Set implements HeaderEditor.
func (h HTTPHeader) Set(name, value string) { h[name] = []string{value} }

// RemoveCredentials removes from h every credential Better-Auth would
// accept, whichever one the request was allowed with: the API-key headers,
// an Authorization header with the Bearer scheme, and the cookies
// SessionCookieMatcher names. Other cookies and other Authorization
// schemes stay. A front end calls it on every allowed request (unless told
// to keep the credential): MCP forbids passing a client's token through, and
// a browser's session cookie must not ride along with an API key.
func (e *Extractor) RemoveCredentials(h HeaderEditor) {
	for _, name := range e.apiKeyHeaders {
		if len(h.Values(name)) > 0 {
			h.Del(name)
		}
	}
	for _, v := range h.Values("Authorization") {
		if isBearerScheme(v) {
			h.Del("Authorization")
			break
		}
	}
	if cookies := h.Values("Cookie"); hasCookie(cookies, e.sessionCookie) {
		if rest := RemoveCookies(cookies, e.sessionCookie); rest != "" {
			h.Set("Cookie", rest)
		} else {
			h.Del("Cookie")
		}
	}
}

// Protected reports whether a header name must never be shaped by a client
// on its way upstream: a gateway-owned name (X-Auth-*, any case, '_' for
// '-') or a name that carries a credential (the API-key headers,
// Authorization, Cookie). Front ends drop such names from Connection tokens
// and from request trailers.
func (e *Extractor) Protected(name string) bool {
	if IsOwnedHeader(name) || sameHeaderName(name, "Authorization") || sameHeaderName(name, "Cookie") {
		return true
	}
	for _, n := range e.apiKeyHeaders {
		if sameHeaderName(name, n) {
			return true
		}
	}
	return false
}

// FilterConnection returns the Connection header without the tokens that
// name protected headers, and whether anything was dropped. A proxy deletes
// every header a Connection token names (RFC 9110 §7.6.1), so a client
// could otherwise have the identity headers the gateway set removed before
// they reach the upstream. An empty result with changed set means no token
// is left.
func (e *Extractor) FilterConnection(values []string) (filtered string, changed bool) {
	for _, v := range values {
		for tok := range strings.SplitSeq(v, ",") {
			if e.Protected(strings.TrimSpace(tok)) {
				changed = true
			}
		}
	}
	if !changed {
		return "", false
	}
	var b strings.Builder
	for _, v := range values {
		for tok := range strings.SplitSeq(v, ",") {
			tok = strings.TrimSpace(tok)
			if tok == "" || e.Protected(tok) {
				continue
			}
			if b.Len() > 0 {
				b.WriteString(", ")
			}
			b.WriteString(tok)
		}
	}
	return b.String(), true
}

// sameHeaderName compares header names as a lenient upstream would: letter
// case ignored, '_' and '-' alike.
func sameHeaderName(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if x == '_' {
			x = '-'
		}
		if y == '_' {
			y = '-'
		}
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// isBearerScheme reports whether an Authorization value uses the Bearer
// scheme (any case), with or without a token.
func isBearerScheme(v string) bool {
	const scheme = "bearer"
	v = strings.TrimSpace(v)
	return len(v) >= len(scheme) && strings.EqualFold(v[:len(scheme)], scheme) &&
		(len(v) == len(scheme) || v[len(scheme)] == ' ' || v[len(scheme)] == '\t')
}

// hasCookie reports whether any cookie in the Cookie header values matches.
func hasCookie(headers []string, match func(string) bool) bool {
	for _, line := range headers {
		for len(line) > 0 {
			var part string
			part, line, _ = strings.Cut(line, ";")
			k, _, _ := strings.Cut(part, "=")
			if match(cookieName(k)) {
				return true
			}
		}
	}
	return false
}
