package pgstore

import (
	"encoding/json"
	"testing"
	"unicode/utf8"
)

// FuzzParseInvalidation checks NOTIFY payloads, which any role that can
// connect may send: parsing never panics, what is accepted names a kind and
// an id, and every invalidation the triggers can write (json_build_object,
// PostgreSQL's spacing) reads back as it was.
func FuzzParseInvalidation(f *testing.F) {
	f.Add(`{"k" : "apikey", "id" : "k1", "u" : "u1"}`, "apikey", "k1", "u1")
	f.Add(`{"k" : "session", "id" : "s1", "u" : null}`, "session", "s1", "")
	f.Add(`{"k" : "apikey_usage", "id" : "k1"}`, "oauth_token", "t\u00e9", "")
	f.Add(`{"K":"user","ID":"u","U":"u"}`, "user", "u\"\\\n", "x")
	f.Add(`{"k":"","id":"x"}`, "", "x", "")
	f.Add(`{"k":1,"id":"x"}`, "member", "", "")
	f.Add(`null`, "organization", "o", "")
	f.Add(`{"k":"a","id":"b","k":"c"}`, "oauth_client", "c", "")
	f.Add("\xff", "oauth_resource", "r", "")
	f.Fuzz(func(t *testing.T, payload, kind, id, user string) {
		if inv, ok := parseInvalidation(payload); ok && (inv.Kind == "" || inv.ID == "") {
			t.Fatalf("%q accepted as %+v", payload, inv)
		}
		if kind == "" || id == "" || !utf8.ValidString(kind) || !utf8.ValidString(id) || !utf8.ValidString(user) {
			return // not what a trigger writes: row ids are text
		}
		want := Invalidation{Kind: kind, ID: id, UserID: user}
		written := map[string]any{"k": kind, "id": id, "u": user}
		if user == "" {
			written["u"] = nil // json_build_object's null
		}
		b, err := json.Marshal(written)
		if err != nil {
			t.Fatal(err)
		}
		if got, ok := parseInvalidation(string(b)); !ok || got != want {
			t.Fatalf("%s reads as %+v (%v), want %+v", b, got, ok, want)
		}
	})
}
