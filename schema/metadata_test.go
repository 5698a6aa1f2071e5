package schema

import (
	"net/netip"
	"strings"
	"testing"
	"time"
)

// The api-key query reads metadata only when a field is named, and only
// from a table that has the column.
func TestBuildReadsMetadataOnlyWhenAsked(t *testing.T) {
	t.Parallel()
	d := Dialect{Qualify: QuoteIdent, Param: "$1"}
	for _, tc := range []struct {
		field string
		key   []string
		reads bool
	}{
		{"", camelKey, false},
		{"allowedIps", camelKey, true},
		{"allowedIps", camelKey[:len(camelKey)-1], false}, // no metadata column
	} {
		l, err := Config{AllowedIPsField: tc.field}.Resolve(Catalog{"user": camelUser, "apikey": tc.key})
		if err != nil {
			t.Fatal(err)
		}
		q := l.Build(d)
		if strings.Contains(q.APIKey, `k."metadata"`) != tc.reads {
			t.Errorf("field %q: %s", tc.field, q.APIKey)
		}
		if !strings.Contains(q.APIKey, `k."permissions", `) {
			t.Errorf("columns out of order: %s", q.APIKey)
		}
	}
}

type fakeRows struct {
	rows [][]any
	i    int
}

func (r *fakeRows) Next() bool { r.i++; return r.i <= len(r.rows) }
func (r *fakeRows) Err() error { return nil }
func (r *fakeRows) Scan(dest ...any) error {
	for i, d := range dest {
		*d.(*any) = r.rows[r.i-1][i]
	}
	return nil
}

// The decoder reads the metadata column as every driver returns it.
func TestDecodeAPIKeyMetadata(t *testing.T) {
	t.Parallel()
	row := func(metadata any) *fakeRows {
		return &fakeRows{rows: [][]any{{"k1", "default", true, nil, nil, nil, nil, nil, time.Now(), nil, metadata,
			"u1", "a@example.com", "A", nil, nil, nil, "u1", nil, nil, nil}}}
	}
	listed := netip.MustParseAddr("10.1.2.3")
	for _, tc := range []struct {
		name     string
		metadata any
		want     string
	}{
		{"text", `{"allowedIps":["10.0.0.0/8"]}`, "listed"},
		{"bytes", []byte(`{"allowedIps":["10.0.0.0/8"]}`), "listed"},
		{"jsonb object", map[string]any{"allowedIps": []any{"10.0.0.0/8"}}, "listed"},
		{"jsonb object, malformed", map[string]any{"allowedIps": []any{"10.0.0.0/8", 7.0}}, "closed"},
		{"jsonb array", []any{"10.0.0.0/8"}, ""},
		{"NULL", nil, ""},
		{"text null", "null", ""},
	} {
		for _, field := range []string{"allowedIps", ""} {
			k, _, err := DecodeAPIKey(row(tc.metadata), field)
			if err != nil || k == nil || k.User.ID != "u1" {
				t.Fatalf("%s: %+v %v", tc.name, k, err)
			}
			l, want := k.AllowedIPs, tc.want
			if field == "" {
				want = ""
			}
			switch {
			case want == "" && l != nil,
				want == "listed" && (l == nil || !l.Admits(listed) || l.Admits(netip.MustParseAddr("11.0.0.1"))),
				want == "closed" && (l == nil || l.Problem == "" || l.Admits(listed)):
				t.Errorf("%s (field %q): %+v", tc.name, field, l)
			}
		}
	}
}
