package secondary_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/caddy-betterauth/caddy-betterauth/betterauth"
	"github.com/caddy-betterauth/caddy-betterauth/secondary"
)

func TestOptionsValidateAndDefaults(t *testing.T) {
	t.Parallel()
	for _, o := range []secondary.Options{{Sessions: "redis"}, {APIKeys: "Storage"}, {Sessions: secondary.Storage, APIKeys: "both"}} {
		if err := o.Validate(); err == nil {
			t.Errorf("%+v accepted", o)
		}
		if _, err := secondary.New(nil, nil, o); err == nil {
			t.Errorf("New took %+v", o)
		}
	}
	for _, o := range []secondary.Options{{}, {Sessions: secondary.Database, APIKeys: secondary.StorageThenDatabase}, {Sessions: secondary.StorageThenDatabase, APIKeys: secondary.Storage}} {
		if err := o.Validate(); err != nil {
			t.Errorf("%+v refused: %v", o, err)
		}
	}
	d := secondary.Options{}.WithDefaults()
	if d.Sessions != secondary.Storage || d.APIKeys != secondary.Database || d.Prefix == nil || *d.Prefix != secondary.DefaultPrefix {
		t.Errorf("defaults %+v", d)
	}
	empty := ""
	if d := (secondary.Options{Prefix: &empty, Sessions: secondary.Database}).WithDefaults(); *d.Prefix != "" || d.Sessions != secondary.Database {
		t.Errorf("set values replaced: %+v", d)
	}
}

func TestRedisOptionsValidate(t *testing.T) {
	t.Parallel()
	for _, o := range []secondary.RedisOptions{{}, {URL: "http://h"}, {URL: "redis://h:6379", Timeout: -time.Second}} {
		if err := o.Validate(); err == nil {
			t.Errorf("%+v accepted", o)
		}
	}
	for _, o := range []secondary.RedisOptions{{URL: "redis://h:6379"}, {URL: "rediss://u:p@h:6380/1", Timeout: time.Second}} {
		if err := o.Validate(); err != nil {
			t.Errorf("%+v refused: %v", o, err)
		}
	}
}

// Without a mode, sessions are read from storage and keys from SQL.
func TestNewUsesTheDefaults(t *testing.T) {
	t.Parallel()
	down := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, DialerRetries: 1})
	defer down.Close()
	sql := &countingSQL{}
	s, err := secondary.New(down, sql, secondary.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := s.Lookup(ctx, betterauth.NewLookup(betterauth.KindSession, strings.Repeat("t", 32))); err == nil || sql.lookups != 0 {
		t.Fatalf("session: %v, %d SQL lookups; want storage's error and none", err, sql.lookups)
	}
	if _, err := s.Lookup(ctx, betterauth.NewLookup(betterauth.KindAPIKey, "ba_key")); err != nil || sql.lookups != 1 {
		t.Fatalf("key: %v, %d SQL lookups; want SQL's answer", err, sql.lookups)
	}
}

type countingSQL struct{ lookups int }

func (c *countingSQL) Lookup(context.Context, betterauth.Lookup) (betterauth.Record, error) {
	c.lookups++
	return betterauth.Record{}, nil
}

func (c *countingSQL) Owner(context.Context, string) (*betterauth.User, *betterauth.Organization, error) {
	return nil, nil, nil
}

func (c *countingSQL) Member(context.Context, string, string) (string, bool, error) {
	return "", false, nil
}
