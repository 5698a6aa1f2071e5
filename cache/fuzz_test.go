package cache

import (
	"bytes"
	"fmt"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/caddy-betterauth/caddy-betterauth/betterauth"
)

// FuzzDecode checks the shared tier's codec on whatever Redis could hold
// (before the seal is checked, a value is anyone's): decode never panics,
// and a decoded entry re-encodes to an entry that decodes to the same
// record and stamp and re-encodes identically.
func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"exp":1796120600000,"ep":3,"w":1796120500000,"k":{"id":"k1","cfg":"default","on":true,"exp":1796120900000,"rem":5,"rint":60000,"ramt":10,"rlast":1796120000000,"perm":{"files":["read","write"]},"ref":"o1","org":{"id":"o1","slug":"acme","name":"Acme"},"ipf":"allowedIPs","ipl":true,"ips":["10.0.0.0/8","2001:db8::1/128"]},"u":{"id":"u1","email":"a@example.com","name":"Zoë","role":"admin","banned":true,"banExp":1796121000000}}`))
	f.Add([]byte(`{"exp":1,"ep":0,"w":0,"s":{"id":"s1","exp":1796120600000,"org":"o1","orole":"owner"},"u":{"id":"u1"}}`))
	f.Add([]byte(`{"exp":1,"o":{"id":"t1","cid":"c1","uid":"u1","sid":"s1","sexp":5,"sc":["openid","mcp:read"],"res":["https://mcp.example.com/mcp"],"resm":true,"exp":9,"rev":true,"cnf":true,"leg":true,"chk":7,"c":true,"cname":"Claude","coff":true},"u":{"id":"u1"}}`))
	f.Add([]byte(`{"exp":1,"k":{"id":"k","on":false,"ipl":true,"ipp":"not a list"}}`))
	f.Add([]byte(`{"exp":-9223372036854775808,"w":9223372036854775807,"k":{"id":"","perm":{}}}`))
	f.Add([]byte(`{"s":{"id":"s"}}`))
	f.Add([]byte(`{"k":{"ipl":true,"ips":["::ffff:1.2.3.4/100"]},"s":{"id":"x"},"u":{"id":"u","name":"\ud800"}}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, st, err := decode(b)
		if err != nil {
			return
		}
		if !r.Found() {
			t.Fatal("decoded an empty record")
		}
		e1, err := encode(r, st)
		if err != nil {
			t.Fatalf("a decoded entry does not encode: %v", err)
		}
		r1, st1, err := decode(e1)
		if err != nil {
			t.Fatalf("the re-encoded entry %s does not decode: %v", e1, err)
		}
		if !sameStamp(st, st1) {
			t.Fatalf("stamp %+v became %+v through %s", st, st1, e1)
		}
		e2, err := encode(r1, st1)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(e1, e2) {
			t.Fatalf("re-encoding differs:\n%s\n%s", e1, e2)
		}
		r2, st2, err := decode(e2)
		if err != nil || !reflect.DeepEqual(r1, r2) || !sameStamp(st1, st2) {
			t.Fatalf("decoding %s twice differs: %v", e2, err)
		}
	})
}

func sameStamp(a, b stamp) bool {
	return a.expires.Equal(b.expires) && a.epoch == b.epoch && a.written.Equal(b.written) && a.ipField == b.ipField
}

// FuzzCodecRoundTrip checks that records as a store returns them (API
// keys, sessions and OAuth tokens, built from the input) come back from
// the shared tier as they went in.
func FuzzCodecRoundTrip(f *testing.F) {
	f.Add(uint8(0), "k1", "u1", "alice@example.com", "Zoë", "o1", "files:read,write", "10.0.0.0/8,2001:db8::/32", int64(1796120600000), int64(5), uint64(3))
	f.Add(uint8(1), "s1", "u1", "", "", "o1", "owner", "", int64(0), int64(-1), uint64(0))
	f.Add(uint8(2), "t1", "u1", "c1", "Claude", "s1", "openid mcp:read", "https://mcp.example.com/mcp", int64(-62135596800000), int64(9223372036854775807), uint64(1))
	f.Add(uint8(3), "t1", "", "c1", "", "", "", "", int64(1), int64(1), uint64(1))
	f.Add(uint8(4), "k", "", "", "", "", "", "bad,::1", int64(1), int64(1), uint64(1))
	f.Fuzz(func(t *testing.T, kind uint8, id, user, s1, s2, s3, list, ips string, ms, n int64, epoch uint64) {
		for _, s := range []string{id, user, s1, s2, s3, list, ips} {
			if !utf8.ValidString(s) {
				return // a store's text is UTF-8; JSON would replace the rest
			}
		}
		at := fromMillis(ms)
		var u *betterauth.User
		if user != "" {
			u = &betterauth.User{ID: user, Email: s1, Name: s2, Role: s3, Banned: n%2 == 0, BanExpires: at}
		}
		var r betterauth.Record
		switch kind % 5 {
		case 0, 4: // an API key, with its organization, permissions and allow-list
			k := &betterauth.APIKey{ID: id, ConfigID: s3, Enabled: n > 0, ExpiresAt: at, Remaining: n, HasRemaining: n != 0,
				RefillInterval: time.Duration(n%1e9) * time.Millisecond, HasRefillAmount: n < 0,
				LastRefillAt: at, CreatedAt: at, ReferenceID: s3, User: u}
			if k.HasRefillAmount {
				k.RefillAmount = -n
			}
			if s3 != "" {
				k.Org = &betterauth.Organization{ID: s3, Slug: s1, Name: s2}
			}
			if res, acts, ok := strings.Cut(list, ":"); ok {
				k.Permissions = betterauth.Permissions{res: strings.Split(acts, ",")}
			}
			if kind%5 == 4 || ips != "" {
				k.AllowedIPs = &betterauth.IPAllowList{Prefixes: []netip.Prefix{}}
				for _, s := range strings.Split(ips, ",") {
					if p, err := netip.ParsePrefix(s); err == nil {
						k.AllowedIPs.Prefixes = append(k.AllowedIPs.Prefixes, p)
					} else {
						k.AllowedIPs.Problem = "malformed"
					}
				}
			}
			r.APIKey = k
		case 1: // a session (always with its user)
			if u == nil {
				u = &betterauth.User{ID: "u"}
			}
			r.Session = &betterauth.Session{ID: id, ExpiresAt: at, User: u}
			if s3 != "" {
				r.Session.Org = &betterauth.Membership{OrgID: s3, Role: list}
			}
		default: // an OAuth token (with an id and a client)
			if id == "" || s1 == "" {
				return
			}
			tok := &betterauth.OAuthToken{ID: id, ClientID: s1, User: u, SessionID: s3, SessionExpiresAt: at,
				Scopes: fields(list), Resources: fields(ips), ResourceMissing: n%3 == 0, ExpiresAt: at,
				Revoked: n%5 == 0, Bound: n%7 == 0, Legacy: kind%2 == 0, CheckBy: at}
			if u != nil {
				tok.UserID = u.ID
			}
			if kind%5 == 2 {
				tok.Client = &betterauth.OAuthClient{ClientID: s1, Name: s2, Disabled: n < 0}
			}
			r.OAuth = tok
		}
		st := stamp{expires: time.UnixMilli(ms), epoch: epoch, written: time.UnixMilli(n)}
		if r.APIKey != nil {
			st.ipField = s2
		}
		b, err := encode(r, st)
		if err != nil {
			t.Fatal(err)
		}
		got, gotSt, err := decode(b)
		if err != nil {
			t.Fatalf("%s does not decode: %v", b, err)
		}
		if !reflect.DeepEqual(got, r) || !sameStamp(gotSt, st) {
			t.Fatalf("%s decodes differently:\n%s\n%s", b, describe(got), describe(r))
		}
	})
}

// fields splits on spaces, nil when there is none (as stores return them).
func fields(s string) []string {
	if f := strings.Fields(s); len(f) > 0 {
		return f
	}
	return nil
}

// FuzzSeal checks that a sealed value opens only as it was sealed, where
// it was sealed: any byte changed, or another place, and it does not; and
// that arbitrary bytes (what Redis may hold) never open.
func FuzzSeal(f *testing.F) {
	f.Add("ba:v5:k:abc", []byte(`{"exp":1}`), uint16(0), byte(1), []byte("x"))
	f.Add("", []byte{}, uint16(31), byte(0xff), make([]byte, 32))
	f.Add("chan", []byte("payload"), uint16(40), byte('P'), append(make([]byte, 32), "payload"...))
	f.Fuzz(func(t *testing.T, place string, payload []byte, at uint16, b byte, arbitrary []byte) {
		s, err := NewSealer(strings.Repeat("fuzz-secret-", 3))
		if err != nil {
			t.Fatal(err)
		}
		if p, ok := s.Open(place, arbitrary); ok && !bytes.Equal(s.Seal(place, p), arbitrary) {
			t.Fatalf("%x opened at %q", arbitrary, place)
		}
		sealed := s.Seal(place, payload)
		if p, ok := s.Open(place, sealed); !ok || !bytes.Equal(p, payload) {
			t.Fatalf("sealed %q opens as %q, %v", payload, p, ok)
		}
		if _, ok := s.Open(place+"x", sealed); ok {
			t.Fatal("opened at another place")
		}
		if _, ok := s.Open(place, sealed[:len(sealed)-1]); ok {
			t.Fatal("opened truncated")
		}
		i := int(at) % len(sealed)
		if sealed[i] != b {
			changed := bytes.Clone(sealed)
			changed[i] = b
			if _, ok := s.Open(place, changed); ok {
				t.Fatalf("opened with byte %d changed", i)
			}
		}
	})
}

// describe spells a record out, pointers followed.
func describe(r betterauth.Record) string {
	var b strings.Builder
	for _, v := range []any{r.APIKey, r.Session, r.OAuth} {
		if !reflect.ValueOf(v).IsNil() {
			fmt.Fprintf(&b, "%+v ", v)
		}
	}
	if r.APIKey != nil {
		fmt.Fprintf(&b, "user %+v org %+v ips %+v", r.APIKey.User, r.APIKey.Org, r.APIKey.AllowedIPs)
	}
	if r.Session != nil {
		fmt.Fprintf(&b, "user %+v org %+v", r.Session.User, r.Session.Org)
	}
	if r.OAuth != nil {
		fmt.Fprintf(&b, "user %+v client %+v", r.OAuth.User, r.OAuth.Client)
	}
	return b.String()
}
