package stats

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/redis/go-redis/v9"

	"github.com/llmoneapi/llmoneapi/internal/redisdb"
	"github.com/llmoneapi/llmoneapi/llm"
)

func init() {
	caddy.RegisterModule(Redis{})
}

// The Redis recorder's defaults.
const (
	DefaultRedisPrefix        = "llm:stats"
	DefaultRedisBatchSize     = 200
	DefaultRedisFlushInterval = 200 * time.Millisecond
	redisWriteTimeout         = 5 * time.Second
)

// Redis is a stats recorder that adds every call to counters in Redis,
// one hash per day (UTC), model and user, which every instance of a fleet
// adds to:
//
//	<prefix>:<YYYY-MM-DD>:<model>:<user>
//
// with the fields requests, errors (status 400 and up), prompt_tokens,
// completion_tokens, cached_tokens, total_tokens and cost (USD, a float),
// and model and user themselves (names may hold ':'). The set
// <prefix>:<YYYY-MM-DD>:keys lists the day's hashes, so readers need no
// SCAN. A call without a user counts under the user "-". Records are
// summed per batch and written in one pipeline; with a ttl, each key
// expires that long after its last write.
//
// A batch Redis refuses is counted as failed and logged: Redis counters
// have no spool.
type Redis struct {
	// The server: redis://[user:password@]host:port/db, or rediss:// for
	// TLS. Placeholders such as {env.REDIS_URL} are resolved.
	URL string `json:"url"`
	// The keys' prefix. Default: llm:stats.
	Prefix string `json:"prefix,omitempty"`
	// How long a day's counters are kept after their last write; 0 keeps
	// them. Default: 0.
	TTL caddy.Duration `json:"ttl,omitempty"`
	// The most records summed into one pipeline. Default: 200.
	BatchSize int `json:"batch_size,omitempty"`
	// How long a record may wait for others to fill its batch.
	// Default: 200ms.
	FlushInterval caddy.Duration `json:"flush_interval,omitempty"`

	url    string
	client *redis.Client
}

// CaddyModule returns the Caddy module information.
func (Redis) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "llm.stats.redis",
		New: func() caddy.Module { return new(Redis) },
	}
}

// Provision checks the options and gets the shared client; it does not
// wait for Redis, which may come up later.
func (r *Redis) Provision(caddy.Context) error {
	r.url = caddy.NewReplacer().ReplaceAll(r.URL, "")
	if r.url == "" {
		return fmt.Errorf("redis: no server URL given")
	}
	if r.BatchSize < 0 || r.FlushInterval < 0 || r.TTL < 0 {
		return fmt.Errorf("redis: batch_size, flush_interval and ttl must not be negative")
	}
	if r.Prefix == "" {
		r.Prefix = DefaultRedisPrefix
	}
	if r.BatchSize == 0 {
		r.BatchSize = DefaultRedisBatchSize
	}
	if r.FlushInterval == 0 {
		r.FlushInterval = caddy.Duration(DefaultRedisFlushInterval)
	}
	client, err := redisdb.Acquire(r.url)
	if err != nil {
		return fmt.Errorf("redis: %w", err)
	}
	r.client = client
	return nil
}

// Cleanup lets go of the client.
func (r *Redis) Cleanup() error {
	if r.client != nil {
		redisdb.Release(r.url)
	}
	return nil
}

// Batch implements BatchRecorder.
func (r *Redis) Batch() (int, time.Duration) { return r.BatchSize, time.Duration(r.FlushInterval) }

// Record implements Recorder.
func (r *Redis) Record(ctx context.Context, c llm.Call) error {
	return r.RecordBatch(ctx, []llm.Call{c})
}

// redisCounts are one hash's increments in a batch.
type redisCounts struct {
	day, model, user                                    string
	requests, errors, prompt, completion, cached, total int64
	cost                                                float64
}

// RecordBatch implements BatchRecorder: it sums calls per hash and sends
// the increments in one pipeline.
func (r *Redis) RecordBatch(ctx context.Context, calls []llm.Call) error {
	sums := make(map[string]*redisCounts)
	days := make(map[string]bool)
	var order []string
	for i := range calls {
		c := &calls[i]
		user := "-"
		if c.Identity != nil && c.Identity.User != "" {
			user = c.Identity.User
		}
		start := c.Start
		if start.IsZero() {
			start = time.Now()
		}
		day := r.Prefix + ":" + start.UTC().Format(time.DateOnly)
		key := day + ":" + c.Model + ":" + user
		s := sums[key]
		if s == nil {
			s = &redisCounts{day: day, model: c.Model, user: user}
			sums[key] = s
			order = append(order, key)
			days[day] = true
		}
		s.requests++
		if c.Status >= 400 {
			s.errors++
		}
		s.prompt += c.Usage.PromptTokens
		s.completion += c.Usage.CompletionTokens
		s.cached += c.Usage.CachedTokens
		s.total += c.Usage.TotalTokens
		s.cost += c.Cost
	}

	ctx, cancel := context.WithTimeout(ctx, redisWriteTimeout)
	defer cancel()
	ttl := time.Duration(r.TTL)
	pipe := r.client.Pipeline()
	for _, key := range order {
		s := sums[key]
		pipe.HSet(ctx, key, "model", s.model, "user", s.user)
		for _, f := range []struct {
			name string
			n    int64
		}{
			{"requests", s.requests}, {"errors", s.errors}, {"prompt_tokens", s.prompt},
			{"completion_tokens", s.completion}, {"cached_tokens", s.cached}, {"total_tokens", s.total},
		} {
			if f.n != 0 || f.name == "requests" {
				pipe.HIncrBy(ctx, key, f.name, f.n)
			}
		}
		if s.cost != 0 {
			pipe.HIncrByFloat(ctx, key, "cost", s.cost)
		}
		if ttl > 0 {
			pipe.Expire(ctx, key, ttl)
		}
		pipe.SAdd(ctx, s.day+":keys", key)
	}
	if ttl > 0 {
		for day := range days {
			pipe.Expire(ctx, day+":keys", ttl)
		}
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("adding %d records to %s: %w", len(calls), redisdb.Redact(r.url), err)
	}
	return nil
}

// UnmarshalCaddyfile sets up the recorder from Caddyfile tokens. Syntax:
//
//	redis <url> [{
//	    prefix         <prefix>
//	    ttl            <duration>
//	    batch_size     <n>
//	    flush_interval <duration>
//	}]
func (r *Redis) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume the recorder's name
	if !d.AllArgs(&r.URL) {
		return d.Errf("redis: want one server URL, such as redis://127.0.0.1:6379/0")
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		switch opt {
		case "prefix":
			if !d.AllArgs(&r.Prefix) {
				return d.ArgErr()
			}
		case "ttl", "flush_interval":
			dur, err := durationArg(d)
			if err != nil {
				return err
			}
			if d.NextArg() {
				return d.ArgErr()
			}
			if opt == "ttl" {
				r.TTL = dur
			} else {
				r.FlushInterval = dur
			}
		case "batch_size":
			var s string
			if !d.AllArgs(&s) {
				return d.ArgErr()
			}
			n, err := strconv.Atoi(s)
			if err != nil || n <= 0 {
				return d.Errf("redis: bad batch_size '%s': must be a positive whole number", s)
			}
			r.BatchSize = n
		default:
			return d.Errf("unrecognized redis recorder subdirective '%s'", opt)
		}
	}
	return nil
}

// Interface guards
var (
	_ BatchRecorder         = (*Redis)(nil)
	_ caddy.Provisioner     = (*Redis)(nil)
	_ caddy.CleanerUpper    = (*Redis)(nil)
	_ caddyfile.Unmarshaler = (*Redis)(nil)
)
