// Package redisstats is an example llm.stats guest: it counts requests and
// tokens per model and user in Redis hashes, as the Python gateway's plugin
// guide does.
package redisstats

import (
	"context"
	"fmt"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/redis/go-redis/v9"

	"github.com/llmoneapi/llmoneapi/llm"
	"github.com/llmoneapi/llmoneapi/stats"
)

func init() { caddy.RegisterModule(RedisStats{}) }

// RedisStats does HINCRBY on <prefix><model>:<user>, fields total_requests
// and total_tokens. Caddyfile, inside llm_stats: `redisstats <url> [<prefix>]`.
type RedisStats struct {
	// URL is the Redis server, e.g. redis://127.0.0.1:6379/0.
	URL string `json:"url"`
	// Prefix starts every key. Default: "stats:".
	Prefix string `json:"prefix,omitempty"`

	client *redis.Client
}

// CaddyModule returns the Caddy module information.
func (RedisStats) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "llm.stats.redisstats", New: func() caddy.Module { return new(RedisStats) }}
}

// Provision checks the URL. It does not wait for Redis: statistics must not
// keep the gateway from starting, and go-redis connects when first used.
func (r *RedisStats) Provision(caddy.Context) error {
	opts, err := redis.ParseURL(r.URL)
	if err != nil {
		return fmt.Errorf("redisstats: url: %w", err)
	}
	if r.Prefix == "" {
		r.Prefix = "stats:"
	}
	r.client = redis.NewClient(opts)
	return nil
}

// Record runs on the recorder's own worker, never on the request's path.
func (r *RedisStats) Record(ctx context.Context, c llm.Call) error {
	user := ""
	if c.Identity != nil {
		user = c.Identity.User
	}
	key := r.Prefix + c.Model + ":" + user
	pipe := r.client.Pipeline() // one round trip for both fields
	pipe.HIncrBy(ctx, key, "total_requests", 1)
	pipe.HIncrBy(ctx, key, "total_tokens", c.Usage.TotalTokens)
	_, err := pipe.Exec(ctx)
	return err
}

// Cleanup closes the client; a Record after it fails with redis.ErrClosed.
func (r *RedisStats) Cleanup() error {
	if r.client == nil {
		return nil
	}
	return r.client.Close()
}

// UnmarshalCaddyfile reads `redisstats <url> [<prefix>]`.
func (r *RedisStats) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the module's name
	args := d.RemainingArgs()
	if len(args) == 0 || len(args) > 2 || d.NextBlock(0) {
		return d.Err("syntax: redisstats <url> [<prefix>]")
	}
	r.URL = args[0]
	if len(args) == 2 {
		r.Prefix = args[1]
	}
	return nil
}

// Interface guards
var (
	_ stats.Recorder        = (*RedisStats)(nil)
	_ caddy.Provisioner     = (*RedisStats)(nil)
	_ caddy.CleanerUpper    = (*RedisStats)(nil)
	_ caddyfile.Unmarshaler = (*RedisStats)(nil)
)
