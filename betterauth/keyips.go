package betterauth

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
)

// MaxAllowedIPs bounds an API key's allow-list: a longer list is refused
// (the key admits no address), so that a key's metadata cannot make every
// request compare thousands of prefixes.
const MaxAllowedIPs = 256

// IPAllowList is an API key's own list of the client addresses it may be
// used from, read from a field of its metadata (see ParseAllowedIPs). A key
// without one (a nil *IPAllowList) is unrestricted.
type IPAllowList struct {
	// Prefixes are the addresses admitted, as ParsePrefix reads them. Empty
	// when the list was malformed: the key then admits no address.
	Prefixes []netip.Prefix
	// Problem says why a list present in the metadata was refused ("" when
	// it was read). It quotes the list at most, never a secret: it is for
	// the log.
	Problem string
}

// Admits reports whether client may use the key. A client whose address
// the front end cannot tell (the zero Addr) is refused, as by the route's
// address rules.
func (l *IPAllowList) Admits(client netip.Addr) bool {
	if l == nil {
		return true
	}
	if !client.IsValid() {
		return false
	}
	client = client.Unmap().WithZone("")
	for _, p := range l.Prefixes {
		if p.Contains(client) {
			return true
		}
	}
	return false
}

// Restricted reports whether the key has an allow-list.
func (l *IPAllowList) Restricted() bool { return l != nil }

// ParseAllowedIPs reads an API key's allow-list from its metadata: the JSON
// text of the api-key plugin's metadata column (JSON.stringify of what the
// app passed to createApiKey or updateApiKey; "null" when it passed none;
// JSON text inside a JSON string in rows written by better-auth 1.4 and
// earlier), or the metadata value of a record in secondary storage (an
// object). field names the metadata's member holding the list, an array of
// addresses and CIDR prefixes:
//
//	{"allowedIps": ["10.0.0.0/8", "203.0.113.7", "2001:db8::/32"]}
//
// It returns nil, an unrestricted key, when there is no metadata or the
// metadata has no such member. A member that is not a non-empty array of at
// most MaxAllowedIPs strings that ParsePrefix accepts, or metadata that is
// not JSON at all (so that whether it names a list cannot be told), gives a
// list that admits nobody, with its Problem: a restriction the operator
// wrote must never turn into an unrestricted key because of a typo.
func ParseAllowedIPs(metadata []byte, field string) *IPAllowList {
	text := bytes.TrimSpace(metadata)
	// Better-Auth parses the text once, and again if that gave a string.
	for range 2 {
		if len(text) == 0 || text[0] != '"' {
			break
		}
		var inner string
		if json.Unmarshal(text, &inner) != nil {
			return refused("the metadata is not JSON")
		}
		text = bytes.TrimSpace([]byte(inner))
	}
	if len(text) == 0 || string(text) == "null" {
		return nil
	}
	if text[0] != '{' {
		if !json.Valid(text) {
			return refused("the metadata is not JSON")
		}
		return nil // JSON, but no object: it names no list
	}
	var members map[string]json.RawMessage
	if json.Unmarshal(text, &members) != nil {
		return refused("the metadata is not JSON")
	}
	raw, ok := members[field]
	if !ok {
		return nil
	}
	return parseList(raw, field)
}

// parseList reads the member named field: a JSON array of strings.
func parseList(raw json.RawMessage, field string) *IPAllowList {
	var elems []json.RawMessage
	if len(raw) == 0 || raw[0] != '[' || json.Unmarshal(raw, &elems) != nil {
		return refused(fmt.Sprintf("metadata.%s is not an array of addresses", field))
	}
	switch {
	case len(elems) == 0:
		return refused(fmt.Sprintf("metadata.%s is empty", field))
	case len(elems) > MaxAllowedIPs:
		return refused(fmt.Sprintf("metadata.%s has %d entries, more than %d", field, len(elems), MaxAllowedIPs))
	}
	l := &IPAllowList{Prefixes: make([]netip.Prefix, 0, len(elems))}
	for i, e := range elems {
		var s string
		if len(e) == 0 || e[0] != '"' || json.Unmarshal(e, &s) != nil {
			return refused(fmt.Sprintf("metadata.%s[%d] is not a string", field, i))
		}
		if len(s) > 64 {
			return refused(fmt.Sprintf("metadata.%s[%d] is too long to be an address", field, i))
		}
		p, err := ParsePrefix(s)
		if err != nil {
			return refused(fmt.Sprintf("metadata.%s[%d]: %v", field, i, err))
		}
		l.Prefixes = append(l.Prefixes, p)
	}
	return l
}

func refused(problem string) *IPAllowList { return &IPAllowList{Problem: problem} }
