// Package redisstats is an example llm.stats guest: it counts requests and
// tokens per model and user in Redis hashes, as the Python gateway's plugin
// guide does.
package redisstats

import (
	"cmp"
	"context"

	"github.com/caddyserver/caddy/v2"

	"github.com/llmoneapi/llmoneapi/guest"
	"github.com/llmoneapi/llmoneapi/llm"
	"github.com/llmoneapi/llmoneapi/stats"
)

func init() { caddy.RegisterModule(RedisStats{}) }

// RedisStats does HINCRBY on <prefix><model>:<user>, fields total_requests
// and total_tokens. Caddyfile, inside llm_stats: `redisstats <url> [<prefix>]`
// (read by the host from the field tags).
type RedisStats struct {
	// The Redis server (url), with its client. Provision and Cleanup come
	// with it: it checks the URL at load, does not wait for Redis
	// (statistics must not keep the gateway from starting), shares the
	// client across reloads and lets go of it.
	guest.Redis
	// Prefix starts every key. Default: "stats:".
	Prefix string `json:"prefix,omitempty" caddyfile:"arg"`
}

// CaddyModule returns the Caddy module information.
func (RedisStats) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "llm.stats.redisstats", New: func() caddy.Module { return new(RedisStats) }}
}

// Record runs on the recorder's own worker, never on the request's path.
func (r *RedisStats) Record(ctx context.Context, c llm.Call) error {
	var user string
	if c.Identity != nil {
		user = c.Identity.User
	}
	key := cmp.Or(r.Prefix, "stats:") + c.Model + ":" + user
	pipe := r.Client.Pipeline() // one round trip for both fields
	pipe.HIncrBy(ctx, key, "total_requests", 1)
	pipe.HIncrBy(ctx, key, "total_tokens", c.Usage.TotalTokens)
	_, err := pipe.Exec(ctx)
	return err
}

var _ stats.Recorder = (*RedisStats)(nil)
