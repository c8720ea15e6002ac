// Package redisdb keeps one Redis client per server URL, shared by every
// module that names it and kept across config reloads.
package redisdb

import (
	"fmt"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/redis/go-redis/v9"
)

var pool = caddy.NewUsagePool()

type pooled struct{ *redis.Client }

func (p pooled) Destruct() error { return p.Client.Close() }

// Acquire returns the shared client for url (redis://[user:pass@]host:port/db
// or rediss:// for TLS). It does not connect: go-redis dials on first use and
// redials after an outage by itself, so a module can start while Redis is
// down and recover without a restart. Each Acquire must be matched by one
// Release with the same url.
func Acquire(url string) (*redis.Client, error) {
	opts, err := redis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("redis URL '%s': %w", Redact(url), err)
	}
	if !strings.Contains(url, "protocol=") {
		// RESP2 unless the URL asks: with RESP3 go-redis looks for push
		// notifications before every reply, which nothing here uses and
		// which cost a limit check about 2 µs.
		opts.Protocol = 2
	}
	v, _, err := pool.LoadOrNew(url, func() (caddy.Destructor, error) {
		return pooled{redis.NewClient(opts)}, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(pooled).Client, nil
}

// Release lets go of a client got from Acquire; the last release closes it.
func Release(url string) {
	_, _ = pool.Delete(url)
}

// Redact hides a password in a Redis URL, for logs and errors.
func Redact(url string) string {
	scheme := strings.Index(url, "://")
	at := strings.LastIndex(url, "@")
	if scheme < 0 || at < scheme {
		return url
	}
	return url[:scheme+3] + "xxxxx" + url[at:]
}
