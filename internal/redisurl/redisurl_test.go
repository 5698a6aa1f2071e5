package redisurl

import (
	"slices"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	t.Parallel()
	o, err := Parse("rediss://u:pw@h1:6380/3", "")
	if err != nil || !slices.Equal(o.Addrs, []string{"h1:6380"}) || o.Username != "u" || o.Password != "pw" || o.DB != 3 || o.TLSConfig == nil {
		t.Fatalf("one node: %+v %v", o, err)
	}
	o, err = Parse("redis://:pw@h1:6379?addr=h2:6379&addr=h3:6379", "")
	if err != nil || len(o.Addrs) != 3 || o.Password != "pw" || o.TLSConfig != nil {
		t.Fatalf("cluster: %+v %v", o, err)
	}
	if o, err = Parse("redis://s1:26379", "mymaster"); err != nil || o.MasterName != "mymaster" {
		t.Fatalf("sentinel: %+v %v", o, err)
	}
	for _, u := range []string{"http://x", "redis://user:hunter2@[::1", "not a url", "redis://:hunter2@h:notaport?addr=h2:1"} {
		if _, err := Parse(u, ""); err == nil || strings.Contains(err.Error(), "hunter2") {
			t.Errorf("%q: %v", u, err)
		}
	}
}
