package route

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"go.uber.org/zap"
	"go.yaml.in/yaml/v3"

	"github.com/llmoneapi/llmoneapi/llm"
)

func init() {
	caddy.RegisterModule(File{})
}

// defaultFileInterval is how often llm.route.file looks at its file.
const defaultFileInterval = 500 * time.Millisecond

// File is a catalog of models read from a YAML or JSON file (YAML is a
// superset of JSON), and read again whenever the file changes: the file is
// checked every Interval, and when its content differs the new models are
// provisioned and swapped in at once, calls in flight finishing on the old
// ones. An edit that does not load (bad YAML, an unknown provider, an unset
// ${ENV} key) is logged with its line and the last good models keep
// serving; a file that does not load when the config loads fails the config.
// Upstream health, cool-downs and policy positions are kept by upstream
// identity, so an edit keeps what the gateway knew of the upstreams it
// keeps.
//
// The file holds a top-level "models" key in one of two shapes:
//
//   - a list: the project's own shape, each item exactly the JSON of a model
//     of llm.route.config (name, upstreams with provider {"name": ...}, url,
//     api_key, ...; price; lb_policy {"policy": ...}; lb_retries, max_fails,
//     ...);
//   - a mapping from model name to model: the models section of an LLM One
//     API (the Python gateway) config.yaml, as it is (see DecodeModels).
//
// In both, an api_key or url written as ${NAME} reads the environment
// variable NAME when the file loads ({env.NAME} works as well).
type File struct {
	// Path is the file of models. A relative path is relative to Caddy's
	// working directory.
	Path string `json:"path"`
	// Interval is how often the file is checked for a change of its
	// content. Caddyfile: interval <duration>. Default 500ms, so that an
	// edit serves within a second.
	Interval caddy.Duration `json:"interval,omitempty"`

	base    caddy.Context
	logger  *zap.Logger
	current *atomic.Pointer[fileModels]
	cancel  context.CancelFunc
	done    *sync.WaitGroup

	// Owned by the watcher goroutine once Provision returned.
	loaded, failed [sha256.Size]byte
	readErr        string
}

// fileModels is one loaded version of the file.
type fileModels struct {
	models []*Model
	byName map[string]*Model
	cancel context.CancelFunc // cleans up the modules the models loaded
	probes *prober
}

// CaddyModule returns the Caddy module information.
func (File) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "llm.route.file",
		New: func() caddy.Module { return new(File) },
	}
}

// Provision loads the file, failing when it does not load, and starts
// watching it.
func (f *File) Provision(ctx caddy.Context) error {
	f.logger = ctx.Logger()
	f.current, f.done = new(atomic.Pointer[fileModels]), new(sync.WaitGroup)
	if f.Path == "" {
		return errors.New("file: the path of a models file is required")
	}
	if f.Interval < 0 {
		return errors.New("file: interval must not be negative")
	}
	if f.Interval == 0 {
		f.Interval = caddy.Duration(defaultFileInterval)
	}
	// Each version's modules (providers, policies) are loaded into a
	// context of their own, cancelled when the version is replaced. Its
	// parent is a context made here, not the config's: cancelling a
	// context made by caddy.NewContext also runs its parent's OnCancel
	// functions, and the config's belong to other modules.
	f.base, _ = caddy.NewContext(ctx)
	data, err := os.ReadFile(f.Path)
	if err != nil {
		return fmt.Errorf("file: reading the models: %w", err)
	}
	fm, notes, err := f.load(data)
	if err != nil {
		return err
	}
	f.logNotes(notes)
	f.current.Store(fm)
	f.loaded = sha256.Sum256(data)
	watch, cancel := context.WithCancel(ctx)
	f.cancel = cancel
	f.done.Add(1)
	go f.watch(watch)
	return nil
}

// Cleanup stops watching the file and lets go of its models.
func (f *File) Cleanup() error {
	if f.cancel != nil {
		f.cancel()
		f.done.Wait()
	}
	if f.current != nil {
		if fm := f.current.Swap(nil); fm != nil {
			fm.release()
		}
	}
	return nil
}

// Lookup returns the named model of the file's current version, or nil.
func (f *File) Lookup(name string) *Model {
	if fm := f.models(); fm != nil {
		return fm.byName[name]
	}
	return nil
}

// List returns the models of the file's current version, in file order.
func (f *File) List() []*Model {
	if fm := f.models(); fm != nil {
		return fm.models
	}
	return nil
}

func (f *File) models() *fileModels {
	if f.current == nil {
		return nil
	}
	return f.current.Load()
}

// probesItself tells the handler that the file's models, which change
// while the config runs, are health-checked by the catalog.
func (*File) probesItself() {}

// watch reads the file every Interval and swaps in a version whose content
// changed and loads.
func (f *File) watch(ctx context.Context) {
	defer f.done.Done()
	tick := time.NewTicker(time.Duration(f.Interval))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		// Reading the whole file, rather than trusting its mtime and size,
		// sees every edit (editors that rename over it, coarse timestamps);
		// a models file is small.
		data, err := os.ReadFile(f.Path)
		if err != nil {
			if err.Error() != f.readErr {
				f.readErr = err.Error()
				f.logger.Error("cannot read the models file; the last good models keep serving", zap.String("file", f.Path), zap.Error(err))
			}
			continue
		}
		f.readErr = ""
		sum := sha256.Sum256(data)
		if sum == f.loaded || sum == f.failed {
			continue
		}
		fm, notes, err := f.load(data)
		if err != nil {
			f.failed = sum
			f.logger.Error("the models file does not load; the last good models keep serving", zap.String("file", f.Path), zap.Error(err))
			continue
		}
		f.loaded = sum
		if old := f.current.Swap(fm); old != nil {
			old.release()
		}
		names := make([]string, len(fm.models))
		for i, m := range fm.models {
			names[i] = m.Name
		}
		f.logger.Info("models file reloaded", zap.String("file", f.Path), zap.Strings("models", names))
		f.logNotes(notes)
	}
}

func (f *File) logNotes(notes []string) {
	for _, n := range notes {
		f.logger.Info("models file: "+n, zap.String("file", f.Path))
	}
}

// load decodes and provisions one version of the file. Its errors start
// with the file and, where known, the line.
func (f *File) load(data []byte) (*fileModels, []string, error) {
	decoded, notes, err := decodeModels(data)
	if err != nil {
		var le *lineError
		if errors.As(err, &le) {
			return nil, nil, fmt.Errorf("%s:%d: %w", f.Path, le.line, le.err)
		}
		return nil, nil, fmt.Errorf("%s: %w", f.Path, err)
	}
	ctx, cancel := caddy.NewContext(f.base)
	fm := &fileModels{byName: make(map[string]*Model, len(decoded)), cancel: cancel}
	for _, d := range decoded {
		if _, dup := fm.byName[d.model.Name]; dup {
			fm.release()
			return nil, nil, fmt.Errorf("%s:%d: model '%s' is defined twice", f.Path, d.line, d.model.Name)
		}
		if err := d.model.Provision(ctx); err != nil {
			// Provision may have taken shared state before it failed.
			d.model.Cleanup()
			fm.release()
			return nil, nil, fmt.Errorf("%s:%d: %w", f.Path, d.line, err)
		}
		fm.models = append(fm.models, d.model)
		fm.byName[d.model.Name] = d.model
	}
	for _, d := range decoded {
		for _, fb := range d.model.Fallbacks {
			if fm.byName[fb] == nil {
				notes = append(notes, fmt.Sprintf("line %d: model '%s': fallback '%s' is not in the file; it serves only if another catalog of the llm_route has it", d.line, d.model.Name, fb))
			}
		}
	}
	fm.probes = startProber(f.logger, fm.models)
	return fm, notes, nil
}

// release stops the version's health checks and lets go of its models;
// calls still running on them finish.
func (fm *fileModels) release() {
	fm.probes.stop()
	for _, m := range fm.models {
		m.Cleanup()
	}
	fm.cancel()
}

// UnmarshalCaddyfile sets up the catalog from Caddyfile tokens:
//
//	file <path> [{
//		interval <duration>
//	}]
func (f *File) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // module name
	if !d.NextArg() {
		return d.Err("file: the path of a models file is required")
	}
	f.Path = d.Val()
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch d.Val() {
		case "interval":
			dur, err := durationArg(d)
			if err != nil {
				return err
			}
			f.Interval = dur
		default:
			return d.Errf("unknown subdirective '%s' in file", d.Val())
		}
	}
	return nil
}

// lineError is a decoding error at a line of the file.
type lineError struct {
	line int
	err  error
}

func (e *lineError) Error() string { return fmt.Sprintf("line %d: %v", e.line, e.err) }
func (e *lineError) Unwrap() error { return e.err }

// decodedModel is a model and the line it starts on.
type decodedModel struct {
	model *Model
	line  int
}

// DecodeModels reads the models of a models file, unprovisioned, and notes
// on what of it is not used. The file's top-level "models" is either a list
// of models in the JSON shape of llm.route.config, or the models mapping of
// an LLM One API config.yaml, read as that gateway reads it. Per model:
//
//   - one upstream: api_base, api_key, adapter (openai, the default, or
//     anthropic; any installed llm.route.providers module name works),
//     timeout (seconds: the upstream's first_byte_timeout) and max_retries
//     (lb_retries);
//   - or upstreams: a list of api_base, api_key, weight, timeout (and
//     adapter), with load_balance_strategy (round_robin, random, weighted:
//     weighted_round_robin, least_connections: least_conn), max_failures
//     (max_fails) and health_check_interval (seconds: health_interval,
//     which turns on active health checks);
//   - price_per_1k_prompt_tokens and price_per_1k_completion_tokens, USD
//     per thousand tokens, directly or under metadata: the model's price in
//     USD per million tokens.
//
// Other fields (owned_by, max_tokens, other metadata, ...) are not used and
// named in the notes. In both shapes, ${NAME} in an api_key or api_base
// becomes the placeholder {env.NAME}, resolved when the models are
// provisioned.
func DecodeModels(data []byte) ([]*Model, []string, error) {
	decoded, notes, err := decodeModels(data)
	if err != nil {
		return nil, nil, err
	}
	models := make([]*Model, len(decoded))
	for i, d := range decoded {
		models[i] = d.model
	}
	return models, notes, nil
}

func decodeModels(data []byte) ([]decodedModel, []string, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, nil, err
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 {
		return nil, nil, errors.New("the file is empty: it needs a top-level 'models'")
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return nil, nil, &lineError{root.Line, errors.New("the file must be a mapping with a top-level 'models'")}
	}
	var models *yaml.Node
	for i := 0; i+1 < len(root.Content); i += 2 {
		if root.Content[i].Value == "models" {
			models = root.Content[i+1]
		}
	}
	var out []decodedModel
	var notes []string
	switch {
	case models == nil:
		return nil, nil, errors.New("the file has no top-level 'models'")
	case models.Kind == yaml.SequenceNode:
		for _, item := range models.Content {
			m, err := decodeOwnModel(item)
			if err != nil {
				return nil, nil, &lineError{item.Line, err}
			}
			out = append(out, decodedModel{m, item.Line})
		}
	case models.Kind == yaml.MappingNode:
		for i := 0; i+1 < len(models.Content); i += 2 {
			key, value := models.Content[i], models.Content[i+1]
			m, n, err := decodePythonModel(key.Value, value)
			if err != nil {
				return nil, nil, &lineError{key.Line, fmt.Errorf("model '%s': %w", key.Value, err)}
			}
			out = append(out, decodedModel{m, key.Line})
			notes = append(notes, n...)
		}
	default:
		return nil, nil, &lineError{models.Line, errors.New("'models' must be a list of models or a mapping from model name to model")}
	}
	if len(out) == 0 {
		return nil, nil, &lineError{models.Line, errors.New("'models' holds no model")}
	}
	return out, notes, nil
}

// decodeOwnModel decodes a model in the JSON shape of llm.route.config,
// refusing unknown fields, so that a typo is an error and not a default.
func decodeOwnModel(node *yaml.Node) (*Model, error) {
	var v any
	if err := node.Decode(&v); err != nil {
		return nil, err
	}
	raw, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("a model must be a mapping with string keys: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	var m Model
	if err := dec.Decode(&m); err != nil {
		if m.Name != "" {
			return nil, fmt.Errorf("model '%s': %w", m.Name, err)
		}
		return nil, err
	}
	for _, u := range m.Upstreams {
		if u != nil {
			u.URL, u.APIKey = EnvPlaceholders(u.URL), EnvPlaceholders(u.APIKey)
		}
	}
	return &m, nil
}

var envVar = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)

// EnvPlaceholders turns each ${NAME} in s into Caddy's placeholder {env.NAME}.
func EnvPlaceholders(s string) string { return envVar.ReplaceAllString(s, "{env.$1}") }

// pythonPrices are the price fields of an LLM One API model, USD per
// thousand tokens.
type pythonPrices struct {
	Prompt     *float64 `yaml:"price_per_1k_prompt_tokens"`
	Completion *float64 `yaml:"price_per_1k_completion_tokens"`
}

type pythonUpstream struct {
	APIBase string   `yaml:"api_base"`
	APIKey  string   `yaml:"api_key"`
	Adapter string   `yaml:"adapter"`
	Weight  *int     `yaml:"weight"`
	Timeout *float64 `yaml:"timeout"`
}

type pythonModel struct {
	pythonUpstream      `yaml:",inline"`
	pythonPrices        `yaml:",inline"`
	MaxRetries          *int             `yaml:"max_retries"`
	Upstreams           []pythonUpstream `yaml:"upstreams"`
	LoadBalanceStrategy string           `yaml:"load_balance_strategy"`
	MaxFailures         *int             `yaml:"max_failures"`
	HealthCheckInterval *float64         `yaml:"health_check_interval"`
	Metadata            pythonPrices     `yaml:"metadata"`
}

// The fields of an LLM One API model, upstream and metadata that are used.
var (
	pythonUpstreamFields = []string{"api_base", "api_key", "adapter", "weight", "timeout"}
	pythonPriceFields    = []string{"price_per_1k_prompt_tokens", "price_per_1k_completion_tokens"}
	pythonModelFields    = append(append([]string{"max_retries", "upstreams", "load_balance_strategy",
		"max_failures", "health_check_interval", "metadata"}, pythonUpstreamFields...), pythonPriceFields...)
)

// unusedKeys returns the keys of a mapping node not in known, each after
// prefix, and the value nodes by key.
func unusedKeys(node *yaml.Node, prefix string, known []string) ([]string, map[string]*yaml.Node) {
	if node == nil || node.Kind != yaml.MappingNode {
		return nil, nil
	}
	var unused []string
	values := make(map[string]*yaml.Node)
	for i := 0; i+1 < len(node.Content); i += 2 {
		k := node.Content[i].Value
		values[k] = node.Content[i+1]
		if !slices.Contains(known, k) {
			unused = append(unused, prefix+k)
		}
	}
	return unused, values
}

// pythonPolicies maps LLM One API's load_balance_strategy to policies.
var pythonPolicies = map[string]string{
	"round_robin":       "round_robin",
	"random":            "random",
	"weighted":          "weighted_round_robin",
	"least_connections": "least_conn",
}

// decodePythonModel turns one model of an LLM One API config.yaml into a
// model, and notes what of it is not used.
func decodePythonModel(name string, node *yaml.Node) (*Model, []string, error) {
	var p pythonModel
	if err := node.Decode(&p); err != nil {
		return nil, nil, err
	}
	m := &Model{Name: name}
	unused, values := unusedKeys(node, "", pythonModelFields)
	more, _ := unusedKeys(values["metadata"], "metadata.", pythonPriceFields)
	unused = append(unused, more...)
	ups := p.Upstreams
	if len(ups) == 0 {
		ups = []pythonUpstream{p.pythonUpstream}
	} else {
		if p.APIBase != "" || p.APIKey != "" || p.Weight != nil {
			unused = append(unused, "api_base, api_key and weight beside upstreams")
		}
		for i, item := range values["upstreams"].Content {
			more, _ := unusedKeys(item, "upstreams["+strconv.Itoa(i)+"].", pythonUpstreamFields)
			unused = append(unused, more...)
		}
	}
	for i, pu := range ups {
		if pu.Adapter == "" {
			pu.Adapter = p.Adapter
		}
		if pu.Timeout == nil {
			pu.Timeout = p.Timeout
		}
		u, err := pu.upstream()
		if err != nil {
			if len(p.Upstreams) > 0 {
				return nil, nil, fmt.Errorf("upstream %d: %w", i+1, err)
			}
			return nil, nil, err
		}
		m.Upstreams = append(m.Upstreams, u)
	}
	if p.MaxRetries != nil {
		if *p.MaxRetries < 0 {
			return nil, nil, errors.New("max_retries must not be negative")
		}
		m.Retries = p.MaxRetries
	}
	if s := p.LoadBalanceStrategy; s != "" {
		policy, ok := pythonPolicies[s]
		if !ok {
			return nil, nil, fmt.Errorf("load_balance_strategy '%s' is not round_robin, random, weighted or least_connections", s)
		}
		m.PolicyRaw = caddyconfig.JSONModuleObject(struct{}{}, "policy", policy, nil)
	}
	if p.MaxFailures != nil {
		if *p.MaxFailures < 1 {
			return nil, nil, errors.New("max_failures must be at least 1")
		}
		m.MaxFails = *p.MaxFailures
	}
	if p.HealthCheckInterval != nil {
		d, err := seconds("health_check_interval", *p.HealthCheckInterval)
		if err != nil {
			return nil, nil, err
		}
		m.HealthInterval = d
	}
	prices := p.Metadata
	if p.Prompt != nil {
		prices.Prompt = p.Prompt
	}
	if p.Completion != nil {
		prices.Completion = p.Completion
	}
	if prices.Prompt != nil || prices.Completion != nil {
		in, err := perMillion("price_per_1k_prompt_tokens", prices.Prompt)
		if err != nil {
			return nil, nil, err
		}
		out, err := perMillion("price_per_1k_completion_tokens", prices.Completion)
		if err != nil {
			return nil, nil, err
		}
		m.Price = &llm.Price{Input: in, Output: out}
	}
	var notes []string
	if len(unused) > 0 {
		sort.Strings(unused)
		notes = append(notes, fmt.Sprintf("model '%s': not used: %s", name, strings.Join(unused, ", ")))
	}
	return m, notes, nil
}

// upstream turns an LLM One API upstream into one of ours.
func (pu pythonUpstream) upstream() (*Upstream, error) {
	if pu.APIBase == "" {
		return nil, errors.New("api_base is missing")
	}
	adapter := pu.Adapter
	if adapter == "" {
		adapter = "openai"
	}
	if _, err := caddy.GetModule("llm.route.providers." + adapter); err != nil {
		return nil, fmt.Errorf("adapter '%s' needs the provider module llm.route.providers.%s, which this Caddy lacks (it has: %s)",
			adapter, adapter, knownModules("llm.route.providers"))
	}
	u := &Upstream{
		ProviderRaw: caddyconfig.JSONModuleObject(struct{}{}, "name", adapter, nil),
		URL:         EnvPlaceholders(pu.APIBase),
		APIKey:      EnvPlaceholders(pu.APIKey),
	}
	if pu.Weight != nil {
		if *pu.Weight < 0 {
			return nil, errors.New("weight must not be negative")
		}
		u.Weight = *pu.Weight
	}
	if pu.Timeout != nil {
		d, err := seconds("timeout", *pu.Timeout)
		if err != nil {
			return nil, err
		}
		u.Timeout = d
	}
	return u, nil
}

// seconds turns a number of seconds into a duration.
func seconds(field string, s float64) (caddy.Duration, error) {
	if s <= 0 || math.IsNaN(s) || s > math.MaxInt64/float64(time.Second) {
		return 0, fmt.Errorf("%s must be a positive number of seconds", field)
	}
	return caddy.Duration(s * float64(time.Second)), nil
}

// perMillion turns a price per thousand tokens into one per million,
// rounded to 12 significant digits so that 0.0015 gives 1.5, not
// 1.5000000000000002.
func perMillion(field string, v *float64) (float64, error) {
	if v == nil {
		return 0, nil
	}
	if *v < 0 || math.IsNaN(*v) || math.IsInf(*v, 0) {
		return 0, fmt.Errorf("%s must be a price of at least 0", field)
	}
	r, _ := strconv.ParseFloat(strconv.FormatFloat(*v*1000, 'g', 12, 64), 64)
	return r, nil
}

// Interface guards
var (
	_ Catalog               = (*File)(nil)
	_ caddy.Provisioner     = (*File)(nil)
	_ caddy.CleanerUpper    = (*File)(nil)
	_ caddyfile.Unmarshaler = (*File)(nil)
)
