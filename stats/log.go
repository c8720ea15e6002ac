package stats

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/llmoneapi/llmoneapi/llm"
)

func init() {
	caddy.RegisterModule(Log{})
}

// Log is a stats recorder that writes one structured line per finished
// request, with the message "llm request", through Caddy's logging. Its
// logger is named after the module (llm.stats.log), so the global `log`
// options can send these lines to their own file or format, or filter them.
//
// Fields: request_id, key_id, user, model, served_model, upstream_model,
// provider, upstream, endpoint, api, stream, status, prompt_tokens,
// completion_tokens, total_tokens, usage_source, cost (USD), duration
// (seconds), attempts (the number of upstream tries); cached_tokens,
// cache_creation_tokens and reasoning_tokens when not 0; team when the key
// has one; ttft (seconds) when a first byte was sent; retried (the
// upstreams of the tries before the last, in order) when the call was
// retried or fell back; truncated and client_aborted when true; error and
// error_code when the client got one. No key material is ever logged.
type Log struct {
	// The level of the lines: debug, info, warn or error. Default: info.
	Level string `json:"level,omitempty"`

	logger *zap.Logger
	level  zapcore.Level
}

// CaddyModule returns the Caddy module information.
func (Log) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "llm.stats.log",
		New: func() caddy.Module { return new(Log) },
	}
}

// Provision checks the level and sets up the logger.
func (l *Log) Provision(ctx caddy.Context) error {
	level, err := parseLevel(l.Level)
	if err != nil {
		return err
	}
	l.level = level
	l.logger = ctx.Logger()
	return nil
}

// parseLevel accepts only the levels that make sense for a request line;
// zap's own parser would also take "fatal", which exits the process.
func parseLevel(s string) (zapcore.Level, error) {
	switch strings.ToLower(s) {
	case "", "info":
		return zapcore.InfoLevel, nil
	case "debug":
		return zapcore.DebugLevel, nil
	case "warn", "warning":
		return zapcore.WarnLevel, nil
	case "error":
		return zapcore.ErrorLevel, nil
	}
	return 0, fmt.Errorf("unknown log level '%s': use debug, info, warn or error", s)
}

// Record writes the line for c.
func (l *Log) Record(_ context.Context, c llm.Call) error {
	// Check first, so that a level the logger drops costs no field building.
	ce := l.logger.Check(l.level, "llm request")
	if ce == nil {
		return nil
	}
	var user, keyID, team string
	if c.Identity != nil {
		user, keyID, team = c.Identity.User, c.Identity.KeyID, c.Identity.Team
	}
	fp := fieldPool.Get().(*[]zap.Field)
	defer func() {
		clear(*fp)
		fieldPool.Put(fp)
	}()
	fields := append((*fp)[:0],
		zap.String("request_id", c.ID),
		zap.String("key_id", keyID),
		zap.String("user", user),
		zap.String("model", c.Model),
		zap.String("served_model", c.ServedModel),
		zap.String("upstream_model", c.UpstreamModel),
		zap.String("provider", c.Provider),
		zap.String("upstream", c.Upstream),
		zap.String("endpoint", string(c.Endpoint)),
		zap.String("api", string(c.API)),
		zap.Bool("stream", c.Stream),
		zap.Int("status", c.Status),
		zap.Int64("prompt_tokens", c.Usage.PromptTokens),
		zap.Int64("completion_tokens", c.Usage.CompletionTokens),
		zap.Int64("total_tokens", c.Usage.TotalTokens),
		zap.String("usage_source", string(c.UsageSource)),
		zap.Float64("cost", c.Cost),
		// Seconds as a float, as in Caddy's access log.
		zap.Float64("duration", c.Duration.Seconds()),
		zap.Int("attempts", len(c.Attempts)),
	)
	if team != "" {
		fields = append(fields, zap.String("team", team))
	}
	for _, f := range []struct {
		name string
		n    int64
	}{
		{"cached_tokens", c.Usage.CachedTokens},
		{"cache_creation_tokens", c.Usage.CacheCreationTokens},
		{"reasoning_tokens", c.Usage.ReasoningTokens},
	} {
		if f.n != 0 {
			fields = append(fields, zap.Int64(f.name, f.n))
		}
	}
	if c.TTFT > 0 {
		fields = append(fields, zap.Float64("ttft", c.TTFT.Seconds()))
	}
	if len(c.Attempts) > 1 {
		fields = append(fields, zap.Strings("retried", retriedUpstreams(c.Attempts)))
	}
	if c.Truncated {
		fields = append(fields, zap.Bool("truncated", true))
	}
	if c.ClientAborted {
		fields = append(fields, zap.Bool("client_aborted", true))
	}
	if c.Error != "" {
		fields = append(fields, zap.String("error", c.Error))
	}
	if c.ErrorCode != "" {
		fields = append(fields, zap.String("error_code", c.ErrorCode))
	}
	ce.Write(fields...)
	*fp = fields
	return nil
}

// fieldPool holds the field lists of records being written: 2 KiB each,
// which would otherwise be allocated for every call.
var fieldPool = sync.Pool{New: func() any { f := make([]zap.Field, 0, 32); return &f }}

// retriedUpstreams names the upstreams of the tries before the last, as
// "<upstream> <outcome>" (the model too when a fallback was tried).
func retriedUpstreams(attempts []llm.Attempt) []string {
	out := make([]string, 0, len(attempts)-1)
	last := attempts[len(attempts)-1]
	for _, a := range attempts[:len(attempts)-1] {
		s := a.Upstream + " " + a.Outcome
		if a.Model != last.Model {
			s = a.Model + "@" + s
		}
		out = append(out, s)
	}
	return out
}

// UnmarshalCaddyfile sets up the recorder from Caddyfile tokens. Syntax:
//
//	log [<level>]
//
//	log {
//	    level <level>
//	}
func (l *Log) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume the recorder's name
	if d.NextArg() {
		l.Level = d.Val()
		if d.NextArg() {
			return d.ArgErr()
		}
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch d.Val() {
		case "level":
			if !d.NextArg() {
				return d.ArgErr()
			}
			l.Level = d.Val()
			if d.NextArg() {
				return d.ArgErr()
			}
		default:
			return d.Errf("unrecognized log recorder subdirective '%s'", d.Val())
		}
	}
	if _, err := parseLevel(l.Level); err != nil {
		return d.WrapErr(err)
	}
	return nil
}

// Interface guards
var (
	_ Recorder              = (*Log)(nil)
	_ caddy.Provisioner     = (*Log)(nil)
	_ caddyfile.Unmarshaler = (*Log)(nil)
)
