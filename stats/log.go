package stats

import (
	"context"
	"fmt"
	"strings"

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
// Fields: request_id, key_id, user, model, upstream_model, provider,
// upstream, endpoint, stream, status, prompt_tokens, completion_tokens,
// total_tokens, usage_source, duration (seconds); ttft (seconds) when a
// first byte was sent; truncated and client_aborted when true; error when
// the client got one. No key material is ever logged.
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
func (l *Log) Record(_ context.Context, c *llm.Call) error {
	// Check first, so that a level the logger drops costs no field building.
	ce := l.logger.Check(l.level, "llm request")
	if ce == nil {
		return nil
	}
	var user, keyID string
	if c.Identity != nil {
		user, keyID = c.Identity.User, c.Identity.KeyID
	}
	fields := make([]zap.Field, 0, 20)
	fields = append(fields,
		zap.String("request_id", c.ID),
		zap.String("key_id", keyID),
		zap.String("user", user),
		zap.String("model", c.Model),
		zap.String("upstream_model", c.UpstreamModel),
		zap.String("provider", c.Provider),
		zap.String("upstream", c.Upstream),
		zap.String("endpoint", string(c.Endpoint)),
		zap.Bool("stream", c.Stream),
		zap.Int("status", c.Status),
		zap.Int64("prompt_tokens", c.Usage.PromptTokens),
		zap.Int64("completion_tokens", c.Usage.CompletionTokens),
		zap.Int64("total_tokens", c.Usage.TotalTokens),
		zap.String("usage_source", string(c.UsageSource)),
		// Seconds as a float, as in Caddy's access log.
		zap.Float64("duration", c.Duration.Seconds()),
	)
	if c.TTFT > 0 {
		fields = append(fields, zap.Float64("ttft", c.TTFT.Seconds()))
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
	ce.Write(fields...)
	return nil
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
