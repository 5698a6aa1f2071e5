package schema

import (
	"reflect"
	"testing"
	"time"
)

// FuzzDecodeValues checks the row decoders on any text a column may hold:
// none panics; text and bytes read alike; a malformed allow-list admits
// nobody; and every date an adapter writes (ISO-8601 text, epoch
// milliseconds) reads back as the same instant.
func FuzzDecodeValues(f *testing.F) {
	f.Add(`{"files":["read","write"]}`, int64(1796120600000))
	f.Add(`{"allowedIps":["10.0.0.0/8","203.0.113.7","2001:db8::/32"]}`, int64(0))
	f.Add(`{"allowedIps":"10.0.0.1"}`, int64(-1))
	f.Add(`{"allowedIps":[]}`, int64(-62135596800000))
	f.Add(`"{\"allowedIps\":[\"::1\"]}"`, int64(253402300799999))
	f.Add(`["a","b"]`, int64(1))
	f.Add(`2026-12-01 11:45:14.123`, int64(1764589514123))
	f.Add(`null`, int64(1))
	f.Add(`{`, int64(1))
	f.Fuzz(func(t *testing.T, s string, ms int64) {
		if !reflect.DeepEqual(permissions(s), permissions([]byte(s))) {
			t.Fatalf("permissions %q: text and bytes differ", s)
		}
		l := allowedIPs(s, "allowedIps")
		if !reflect.DeepEqual(l, allowedIPs([]byte(s), "allowedIps")) {
			t.Fatalf("allow-list %q: text and bytes differ", s)
		}
		if l != nil && l.Problem != "" && len(l.Prefixes) > 0 {
			t.Fatalf("malformed allow-list %q (%s) admits %v", s, l.Problem, l.Prefixes)
		}
		if l != nil && l.Problem == "" && len(l.Prefixes) == 0 {
			t.Fatalf("allow-list %q admits nobody without a problem", s)
		}
		var d decoder
		d.strings(s, false, "f")
		d.strings([]byte(s), true, "f")
		d.time(s, "f")
		d.int(s, "f")
		d.bool(s, "f")
		d.text(s, "f")

		var d2 decoder
		want := time.UnixMilli(ms).UTC()
		if want.Year() < 0 || want.Year() > 9999 {
			return // no adapter writes those as ISO-8601
		}
		for _, v := range []any{ms, float64(ms), want.Format(time.RFC3339Nano), want.Format("2006-01-02T15:04:05.000Z"),
			want.Format("2006-01-02 15:04:05.999999999")} {
			if f, ok := v.(float64); ok && int64(f) != ms {
				continue // beyond a float's integers
			}
			if got := d2.time(v, "f"); !got.Equal(want) || d2.err != nil {
				t.Fatalf("%#v reads as %v (%v), want %v", v, got, d2.err, want)
			}
		}
	})
}
