package guest

import (
	"errors"

	"github.com/caddyserver/caddy/v2"
	"github.com/redis/go-redis/v9"

	"github.com/llmoneapi/llmoneapi/internal/redisdb"
)

// Redis is a Redis server a guest module talks to, made to be embedded in
// the module's struct: its URL is the module's "url" config field (and its
// first Caddyfile argument), and Client the server's client. The module
// then gets Provision and Cleanup from it; a module that needs its own
// calls these from them.
//
// The client is shared by every module of the process that names the same
// server, the built-in Redis modules included, and is kept across config
// reloads, so a reload opens no new connections. Never Close it.
type Redis struct {
	// URL is the Redis server: redis://[[user]:password@]host[:port][/db],
	// or rediss:// for TLS. Placeholders such as {env.REDIS_URL} are
	// resolved when the config loads. Required.
	URL string `json:"url" caddyfile:"arg"`

	// Client is the server's client, set by Provision.
	Client *redis.Client `json:"-"`

	held string // the resolved URL whose client Provision took
}

// Provision checks the URL and takes the server's shared client. It does
// not connect: go-redis dials on first use and again after an outage, so
// Redis being down does not keep the config from loading, and the module
// recovers without a reload.
func (r *Redis) Provision(caddy.Context) error {
	url := caddy.NewReplacer().ReplaceAll(r.URL, "")
	if url == "" {
		return errors.New("no Redis url given (is its environment variable set?)")
	}
	client, err := redisdb.Acquire(url)
	if err != nil {
		return err
	}
	r.Client, r.held = client, url
	return nil
}

// Cleanup lets go of the client; the last module to let go of a server's
// client closes it. Client stays set, so that a call still running (a
// recorder draining its queue) gets redis.ErrClosed, not a nil pointer.
func (r *Redis) Cleanup() error {
	if r.held != "" {
		redisdb.Release(r.held)
		r.held = ""
	}
	return nil
}
