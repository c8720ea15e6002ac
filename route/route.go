// Package route holds the llm_route handler, which serves the OpenAI API to
// clients and forwards each call to an upstream LLM provider, retrying and
// failing over before the answer's first byte, and the guest interfaces it
// hosts: Catalog (namespace llm.route), which says which models exist and
// where they are served, Provider (namespace llm.route.providers), which
// speaks an upstream's API, and Policy (namespace llm.route.policies), which
// spreads calls over a model's upstreams.
package route

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/llmoneapi/llmoneapi/internal/metrics"
	"github.com/llmoneapi/llmoneapi/llm"
)

func init() {
	caddy.RegisterModule(Handler{})
}

// Catalog says which models the gateway serves and where. Catalogs are guest
// modules in the llm.route namespace; llm.route.config holds models written
// in the config. A catalog provisions each model it serves with
// Model.Provision and lets go of it with Model.Cleanup, which keeps the
// upstreams' health and the policy's position shared across configs.
type Catalog interface {
	// Lookup returns the named model, or nil when the catalog lacks it.
	Lookup(name string) *Model
	// List returns every model of the catalog, in a stable order.
	List() []*Model
}

// selfProber is a catalog that runs the active health checks of its models
// itself, because they change while the config runs.
type selfProber interface{ probesItself() }

// Handler serves the OpenAI API: POST /v1/chat/completions, /v1/completions,
// /v1/embeddings and /v1/responses, and GET /v1/models and
// /v1/models/{model}; and Anthropic's: POST /v1/messages and
// /v1/messages/count_tokens. It finds the requested model in its catalogs,
// forwards the call to one of the model's upstreams through the upstream's
// provider, streams the answer back event by event, and records the model,
// upstream and token usage in the request's llm.Call. Paths are matched by
// their ending, so the API can sit under any
// prefix (/v1/chat/completions, /openai/v1/chat/completions, ...).
//
// It sets these placeholders (with llm_auth and llm_stats, see their docs):
// {llm.model}, {llm.upstream_model}, {llm.provider}, {llm.upstream},
// {llm.usage.prompt_tokens}, {llm.usage.completion_tokens},
// {llm.usage.total_tokens}, {llm.usage.source}, {llm.ttft_ms} and
// {llm.stream}.
type Handler struct {
	// CatalogsRaw are the model catalogs, asked in order: the first that
	// knows a model serves it. The Caddyfile's model blocks make one
	// {"source": "config"} catalog.
	CatalogsRaw []json.RawMessage `json:"catalogs,omitempty" caddy:"namespace=llm.route inline_key=source"`
	// MaxBodySize is the largest request body accepted, in bytes; larger
	// ones get 413. Default 32 MiB.
	MaxBodySize int64 `json:"max_body_size,omitempty"`

	catalogs []Catalog
	logger   *zap.Logger
	probes   *prober
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.llm_route",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Provision loads the catalogs and starts the active health checks of the
// models that ask for them.
func (h *Handler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	if h.MaxBodySize < 0 {
		return fmt.Errorf("max_body_size must not be negative")
	}
	if h.MaxBodySize == 0 {
		h.MaxBodySize = llm.DefaultMaxBodySize
	}
	mods, err := ctx.LoadModule(h, "CatalogsRaw")
	if err != nil {
		return fmt.Errorf("loading model catalogs: %w", err)
	}
	for _, m := range mods.([]any) {
		c, ok := m.(Catalog)
		if !ok {
			return fmt.Errorf("module %T is not a model catalog", m)
		}
		h.catalogs = append(h.catalogs, c)
	}
	if err := metrics.Register(ctx.GetMetricsRegistry(), upstreamCollector{}); err != nil {
		return fmt.Errorf("registering upstream metrics: %w", err)
	}
	// A catalog whose models change while the config runs (llm.route.file)
	// health-checks its models itself.
	own := make(map[*Model]bool)
	for _, c := range h.catalogs {
		if _, ok := c.(selfProber); ok {
			for _, m := range c.List() {
				own[m] = true
			}
		}
	}
	var probed []*Model
	for _, m := range h.allModels() {
		if !own[m] {
			probed = append(probed, m)
		}
	}
	h.probes = startProber(h.logger, probed)
	register(h)
	return nil
}

// Validate checks that the handler serves at least one model and that every
// fallback names one of its models.
func (h *Handler) Validate() error {
	models := h.allModels()
	if len(models) == 0 {
		return fmt.Errorf("llm_route serves no model: add a model block")
	}
	for _, m := range models {
		for _, f := range m.Fallbacks {
			if h.model(f) == nil {
				return fmt.Errorf("model '%s': fallback '%s' is not a model of this llm_route", m.Name, f)
			}
		}
	}
	return nil
}

// Cleanup stops the health checks and takes the handler off the admin
// view. Calls of this config still in flight (a long stream across a
// reload) go on: the upstreams' transports and health live on while the new
// config holds them.
func (h *Handler) Cleanup() error {
	unregister(h)
	h.probes.stop()
	return nil
}

// allModels returns the models of every catalog, the first catalog's model
// of a name hiding a later one's.
func (h *Handler) allModels() []*Model {
	var out []*Model
	seen := make(map[string]bool)
	for _, c := range h.catalogs {
		for _, m := range c.List() {
			if !seen[m.Name] {
				seen[m.Name] = true
				out = append(out, m)
			}
		}
	}
	return out
}

// model returns the named model from the first catalog that has it.
func (h *Handler) model(name string) *Model {
	for _, c := range h.catalogs {
		if m := c.Lookup(name); m != nil {
			return m
		}
	}
	return nil
}

// ServeHTTP serves one API call. Every error is written to the client as
// a JSON error in its API's format (llm.Error.Write), so it returns nil
// except for write failures Caddy should know of.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	call := llm.CallFrom(r)
	path := strings.TrimRight(r.URL.Path, "/")
	endpoint, modelID := endpointOf(path)
	call.Endpoint, call.API = endpoint, endpoint.API()
	switch endpoint {
	case "":
		reject(w, r, llm.Errorf(http.StatusNotFound, llm.TypeNotFound, "unknown_endpoint",
			"this gateway does not serve %s %s; it serves POST /v1/chat/completions, /v1/completions, /v1/embeddings, /v1/responses, /v1/messages, /v1/messages/count_tokens and GET /v1/models",
			r.Method, r.URL.Path))
		return nil
	case llm.EndpointModels:
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			methodNotAllowed(w, r, http.MethodGet)
			return nil
		}
		h.serveModels(w, r, call, modelID)
		return nil
	}
	if r.Method != http.MethodPost {
		methodNotAllowed(w, r, http.MethodPost)
		return nil
	}
	req, e := llm.ReadRequest(r, h.MaxBodySize)
	if e != nil {
		reject(w, r, e)
		return nil
	}
	if req.Model == "" {
		reject(w, r, llm.ErrMissingModel())
		return nil
	}
	// llm_auth checks the scope too, for stock handlers behind it; this
	// check covers identities set by other authenticating handlers.
	if e := call.Identity.CheckModel(req.Model); e != nil {
		reject(w, r, e)
		return nil
	}
	m := h.model(req.Model)
	if m == nil {
		e := llm.Errorf(http.StatusNotFound, llm.TypeInvalidRequest, "model_not_found",
			"the model '%s' does not exist on this gateway; GET /v1/models lists the models your key may use", req.Model)
		e.Param = "model"
		reject(w, r, e)
		return nil
	}
	call.ServedModel, call.Price = m.Name, m.Price
	// Admitted once, for the model asked for; fallbacks are checked against
	// the key's scope only.
	if e := call.Admit(r, m.Name, m.Price); e != nil {
		reject(w, r, e)
		return nil
	}
	h.serveCall(w, r, call, endpoint, req, m)
	call.Cost = call.Price.Cost(call.Usage)
	return nil
}

// endpointOf maps a path to the endpoint it calls, and for
// /models/{model} also returns the model.
func endpointOf(path string) (llm.Endpoint, string) {
	e := llm.EndpointOf(path)
	if e == llm.EndpointModels {
		// Model names may hold slashes (meta-llama/Llama-3.1-8B), so the
		// model is everything after the first /models/.
		if _, id, ok := strings.Cut(path, "/models/"); ok {
			return e, id
		}
	}
	return e, ""
}

// reject answers the client with e and records its code in the call.
func reject(w http.ResponseWriter, r *http.Request, e *llm.Error) {
	llm.CallFrom(r).ErrorCode = e.Code
	e.Write(w, r)
}

func methodNotAllowed(w http.ResponseWriter, r *http.Request, allow string) {
	w.Header().Set("Allow", allow)
	reject(w, r, llm.Errorf(http.StatusMethodNotAllowed, llm.TypeInvalidRequest, "method_not_allowed",
		"%s is not allowed on %s; use %s", r.Method, r.URL.Path, allow))
}

// modelObject is a model as OpenAI's API lists it.
type modelObject struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	OwnedBy string `json:"owned_by"`
}

func newModelObject(m *Model) modelObject {
	_, provider := m.Upstreams[0].Provider()
	return modelObject{ID: m.Name, Object: "model", OwnedBy: provider}
}

// serveModels lists the models the client's key may use, or describes one.
func (h *Handler) serveModels(w http.ResponseWriter, r *http.Request, call *llm.Call, id string) {
	var scope llm.Scope
	if call.Identity != nil {
		scope = call.Identity.Models
	}
	var body any
	if id != "" {
		m := h.model(id)
		if m == nil || !scope.Allows(id) {
			e := llm.Errorf(http.StatusNotFound, llm.TypeInvalidRequest, "model_not_found",
				"the model '%s' does not exist on this gateway or your key may not use it", id)
			reject(w, r, e)
			return
		}
		call.Model = id
		body = newModelObject(m)
	} else {
		list := struct {
			Object string        `json:"object"`
			Data   []modelObject `json:"data"`
		}{Object: "list", Data: []modelObject{}}
		for _, m := range h.allModels() {
			if scope.Allows(m.Name) {
				list.Data = append(list.Data, newModelObject(m))
			}
		}
		body = list
	}
	out, _ := json.Marshal(body)
	call.Status = http.StatusOK
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(out)
	}
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.Validator             = (*Handler)(nil)
	_ caddy.CleanerUpper          = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)
