// Package redisurl reads the Redis URLs of the gateway's configuration into
// go-redis options: where to connect and as whom. What to do when Redis is
// slow or gone (timeouts, retries) is left to each user: the shared cache
// tier (package rediscache) falls through to the database, secondary
// storage (package secondary) is a source of truth.
package redisurl

import (
	"errors"
	"fmt"
	"net/url"

	"github.com/redis/go-redis/v9"
)

// Parse reads redis://[user:pass@]host:port[/db], or rediss:// for TLS;
// more nodes of a cluster go in addr parameters
// (redis://h1:6379?addr=h2:6379&addr=h3:6379). With sentinelMaster set,
// the URL's hosts are Sentinels of that master. Errors never repeat the
// URL, which may hold a password.
func Parse(rawURL, sentinelMaster string) (*redis.UniversalOptions, error) {
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "redis" && u.Scheme != "rediss") {
		return nil, errors.New("redis: want a redis:// or rediss:// URL")
	}
	uo := &redis.UniversalOptions{MasterName: sentinelMaster}
	if u.Query().Has("addr") {
		co, err := redis.ParseClusterURL(rawURL)
		if err != nil {
			return nil, fmt.Errorf("redis: cluster URL: %s", redact(err))
		}
		uo.Addrs, uo.Username, uo.Password, uo.TLSConfig = co.Addrs, co.Username, co.Password, co.TLSConfig
	} else {
		o, err := redis.ParseURL(rawURL)
		if err != nil {
			return nil, fmt.Errorf("redis: URL: %s", redact(err))
		}
		uo.Addrs, uo.Username, uo.Password, uo.DB, uo.TLSConfig = []string{o.Addr}, o.Username, o.Password, o.DB, o.TLSConfig
	}
	return uo, nil
}

// redact keeps go-redis's reason without any URL it quotes.
func redact(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err.Error()
	}
	return "invalid"
}
