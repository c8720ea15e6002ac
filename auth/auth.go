// Package auth is the gateway's client authentication: the llm_auth HTTP
// handler, the Authenticator interface its guests implement (namespace
// llm.auth), and the built-in authenticators.
package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"go.uber.org/zap"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/llmoneapi/llmoneapi/internal/directive"
	"github.com/llmoneapi/llmoneapi/llm"
)

func init() {
	caddy.RegisterModule(Handler{})
}

// Authenticator finds who a client key belongs to. It answers one of:
//
//   - an Identity: the key is its and good;
//   - (nil, nil): not its key, so the next authenticator is asked;
//   - a *Refusal: its key, but refused now (expired, disabled, revoked); the
//     client gets 401 with the refusal's code and reason, and no other
//     authenticator is asked;
//   - any other error: it could not tell (its store is unreachable). The
//     other authenticators are still asked, so that their keys keep
//     working; only a key none of them accepts gets 503.
//
// The returned Identity may be shared between requests: callers must not
// modify it. Implementations are modules in the llm.auth namespace.
type Authenticator interface {
	Authenticate(ctx context.Context, key string) (*llm.Identity, error)
}

// Refusal is the error an Authenticator returns for a key it knows but does
// not accept now. Its Code and Reason reach the client, so the Reason must
// name the key by its public id only.
type Refusal struct {
	// Code is the error code the client gets, e.g. "api_key_expired".
	Code string
	// Reason is the message the client gets, saying what to do about it.
	Reason string
}

func (r *Refusal) Error() string { return r.Reason }

// Handler authenticates LLM API clients by their API key and checks that the
// key may use the model the request names.
//
// The key is taken from the `Authorization: Bearer <key>` header, else from
// `x-api-key`, else from `api-key`. All three headers are removed from the
// request before it goes further, so the client's key never reaches an
// upstream, even through a stock reverse_proxy.
//
// Responses, all OpenAI-style JSON errors:
//
//   - 401 `missing_api_key`: no key was sent;
//   - 401 `invalid_api_key`: no authenticator knows the key;
//   - 401 with the authenticator's code (`api_key_expired`,
//     `api_key_disabled`, `api_key_revoked`): the key is known but refused;
//   - 503 `auth_unavailable`: an authenticator could not check the key (its
//     store is down) and no other accepted it;
//   - 403 `model_not_allowed`: the key's model scope excludes the model;
//   - 400 / 413: the body could not be read to check the scope (only for
//     keys with a model scope; other keys never make the handler read the body).
//   - 429 `rate_limit_exceeded` / `insufficient_quota`: over one of the key's
//     limits, or a budget it shares (see LimitSettings);
//   - 503 `limits_unavailable`: the limits store cannot answer and
//     on_store_error says fail_closed for one of the key's limits.
//
// After a successful authentication, the placeholders `{llm.user}` and
// `{llm.key_id}` hold the key's user and public key id, and the access log
// line gets the fields `user` and `key_id`.
type Handler struct {
	// Authenticators to ask, in order; the first that knows the key wins.
	// At least one is required.
	AuthenticatorsRaw []json.RawMessage `json:"authenticators,omitempty" caddy:"namespace=llm.auth inline_key=source"`

	// The largest request body, in bytes, read when the handler must check a
	// key's model scope. Default: 32 MiB.
	MaxBodySize int64 `json:"max_body_size,omitempty"`

	// How the keys' limits are enforced, and budgets shared by users and teams.
	LimitSettings

	authenticators []Authenticator
	logger         *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.llm_auth",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Provision loads the authenticators.
func (h *Handler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	// Without an authenticator every request would fail with 401: fail the
	// config instead. Checked before loading, which empties the raw field.
	if len(h.AuthenticatorsRaw) == 0 {
		return errors.New("llm_auth needs at least one authenticator, for example 'static { key <key> }'")
	}
	mods, err := ctx.LoadModule(h, "AuthenticatorsRaw")
	if err != nil {
		return fmt.Errorf("loading authenticators: %v", err)
	}
	for _, mod := range mods.([]any) {
		a, ok := mod.(Authenticator)
		if !ok {
			return fmt.Errorf("module %s is not an llm_auth authenticator; is %T", caddy.GetModuleID(mod), mod)
		}
		h.authenticators = append(h.authenticators, a)
	}
	if h.MaxBodySize == 0 {
		h.MaxBodySize = llm.DefaultMaxBodySize
	}
	return h.provisionLimits(ctx)
}

// Validate checks the handler's settings.
func (h *Handler) Validate() error {
	if h.MaxBodySize < 0 {
		return fmt.Errorf("max_body_size must not be negative, got %d", h.MaxBodySize)
	}
	return h.validateLimits()
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	key := clientKey(r.Header)
	r.Header.Del("Authorization")
	r.Header.Del("X-Api-Key")
	r.Header.Del("Api-Key")
	if key == "" {
		unauthorized(w, r, "missing_api_key",
			"no API key was sent; send it as 'Authorization: Bearer <key>' or in the 'x-api-key' header")
		return nil
	}

	id, err := h.authenticate(r.Context(), key)
	var refusal *Refusal
	if errors.As(err, &refusal) {
		unauthorized(w, r, refusal.Code, refusal.Reason)
		return nil
	}
	if err != nil {
		// The cause goes to the log only: it may name hosts and stores the
		// client has no business knowing, and its text may echo the key.
		msg := strings.ReplaceAll(err.Error(), key, "[redacted]")
		h.logger.Error("could not check an API key", zap.String("request_id", llm.CallFrom(r).ID), zap.String("error", msg))
		llm.Errorf(http.StatusServiceUnavailable, llm.TypeServer, "auth_unavailable",
			"the API key could not be checked right now; try again later").Write(w, r)
		return nil
	}
	if id == nil {
		unauthorized(w, r, "invalid_api_key", "the API key is not valid; check it, or ask the gateway's operator for one")
		return nil
	}

	llm.CallFrom(r).Identity = id
	if extra, ok := r.Context().Value(caddyhttp.ExtraLogFieldsCtxKey).(*caddyhttp.ExtraLogFields); ok && extra != nil && accessLogged(r) {
		// Set, not Add: a request that passes two llm_auth handlers must not
		// log duplicate keys.
		extra.Set(zap.String("user", id.User))
		extra.Set(zap.String("key_id", id.KeyID))
	}

	if len(id.Models) > 0 && hasBody(r.Method) {
		req, e := llm.ReadRequest(r, h.MaxBodySize)
		if e != nil {
			e.Write(w, r)
			return nil
		}
		if req.Model == "" {
			llm.ErrMissingModel().Write(w, r)
			return nil
		}
		if e := id.CheckModel(req.Model); e != nil {
			e.Write(w, r)
			return nil
		}
	}

	return h.serveLimited(w, r, id, next)
}

// authenticate asks the authenticators in order. The first that knows the
// key decides, with an identity or a refusal. One that cannot tell is
// passed over, so that an outage of its store leaves the others' keys
// working; its error is the answer only when no other accepts the key.
func (h *Handler) authenticate(ctx context.Context, key string) (*llm.Identity, error) {
	var unavailable error
	for _, a := range h.authenticators {
		id, err := a.Authenticate(ctx, key)
		var refusal *Refusal
		switch {
		case errors.As(err, &refusal):
			return nil, refusal
		case err != nil:
			if unavailable == nil {
				unavailable = fmt.Errorf("authenticator %s: %w", caddy.GetModuleName(a), err)
			}
		case id != nil:
			return id, nil
		}
	}
	return nil, unavailable
}

// clientKey returns the key the client sent, or "" if none. A non-Bearer
// Authorization header (say, Basic for an outer proxy) does not hide a key
// sent in x-api-key.
func clientKey(hdr http.Header) string {
	const bearer = "bearer "
	if v := hdr.Get("Authorization"); len(v) > len(bearer) && strings.EqualFold(v[:len(bearer)], bearer) {
		if key := strings.TrimSpace(v[len(bearer):]); key != "" {
			return key
		}
	}
	if key := strings.TrimSpace(hdr.Get("X-Api-Key")); key != "" {
		return key
	}
	return strings.TrimSpace(hdr.Get("Api-Key"))
}

// accessLogged tells whether the request's server writes access logs,
// the only reader of its extra log fields: without them, setting the
// fields is work nobody reads.
func accessLogged(r *http.Request) bool {
	srv, ok := r.Context().Value(caddyhttp.ServerCtxKey).(*caddyhttp.Server)
	return !ok || srv.Logs != nil
}

func unauthorized(w http.ResponseWriter, r *http.Request, code, msg string) {
	// RFC 9110 requires a challenge with every 401.
	w.Header().Set("WWW-Authenticate", "Bearer")
	llm.Errorf(http.StatusUnauthorized, llm.TypeAuthentication, code, "%s", msg).Write(w, r)
}

// hasBody reports whether a request of this method carries a body that names
// a model. Other methods (GET /v1/models) are scoped by the handlers that
// serve them.
func hasBody(method string) bool {
	return method == http.MethodPost || method == http.MethodPut || method == http.MethodPatch
}

// ParseCaddyfile sets up the handler from Caddyfile tokens; see
// Handler.UnmarshalCaddyfile for the syntax.
func ParseCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	m := new(Handler)
	if err := m.UnmarshalCaddyfile(h.Dispenser); err != nil {
		return nil, err
	}
	return m, nil
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	llm_auth [<matcher>] {
//	    max_body_size <size>
//	    limits <store> [<args...>]
//	    on_store_error [rate|quota|budget...] fail_open|fail_closed
//	    budget user|team <name>|* <usd> [daily|weekly|monthly]
//	    default_max_tokens <tokens>
//	    <authenticator> [<args...>] [{
//	        ...
//	    }]
//	}
//
// Each <authenticator> names an llm.auth module (such as static) and is
// followed by that module's own syntax; they are asked in the order written.
// <size> takes units like 10MB or 8MiB.
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch name := d.Val(); name {
		case "max_body_size":
			size, err := directive.Size(d)
			if err != nil {
				return err
			}
			h.MaxBodySize = size
		default:
			if ok, err := h.unmarshalLimitSetting(d); err != nil {
				return err
			} else if ok {
				continue
			}
			mod, raw, err := directive.Guest(d, "llm_auth", "llm.auth", "source", "authenticator")
			if err != nil {
				return err
			}
			if _, ok := mod.(Authenticator); !ok {
				return d.Errf("module %T is not an authenticator", mod)
			}
			h.AuthenticatorsRaw = append(h.AuthenticatorsRaw, raw)
		}
	}
	return nil
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.Validator             = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
	_ caddyfile.Unmarshaler       = (*Handler)(nil)
)
