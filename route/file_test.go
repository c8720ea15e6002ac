package route_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/openai/openai-go/v3"

	"github.com/llmoneapi/llmoneapi/internal/llmtest"
	"github.com/llmoneapi/llmoneapi/route"
)

// modelJSON is a decoded model as llm.route.config's JSON shows it.
func modelJSON(t *testing.T, m *route.Model) map[string]any {
	t.Helper()
	raw, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	var v map[string]any
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

func decodeFile(t *testing.T, name string) ([]*route.Model, []string) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "testdata", "llmoneapi", name))
	if err != nil {
		t.Fatal(err)
	}
	models, notes, err := route.DecodeModels(data)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return models, notes
}

func TestDecodePythonSingleUpstream(t *testing.T) {
	models, notes := decodeFile(t, "with_pricing.yaml")
	if len(models) != 3 {
		t.Fatalf("got %d models, want 3", len(models))
	}
	gpt35 := modelJSON(t, models[0])
	want := `{"lb_retries":3,"name":"gpt-3.5-turbo","price":{"input":1.5,"output":2},` +
		`"upstreams":[{"api_key":"sk-openai-pricing","provider":{"name":"openai"},"timeout":30000000000,"url":"https://api.openai.com/v1"}]}`
	if got, _ := json.Marshal(gpt35); string(got) != want {
		t.Errorf("gpt-3.5-turbo:\n got %s\nwant %s", got, want)
	}
	if p := models[1].Price; p == nil || p.Input != 30 || p.Output != 60 {
		t.Errorf("gpt-4's price from metadata: %+v, want 30 and 60 per million", p)
	}
	claude := modelJSON(t, models[2])
	if name := claude["upstreams"].([]any)[0].(map[string]any)["provider"].(map[string]any)["name"]; name != "anthropic" {
		t.Errorf("adapter anthropic became provider %v", name)
	}
	joined := strings.Join(notes, "\n")
	for _, n := range []string{"model 'gpt-3.5-turbo': not used: max_tokens", "model 'gpt-4': not used: metadata.description, metadata.max_tokens"} {
		if !strings.Contains(joined, n) {
			t.Errorf("notes %q lack %q", joined, n)
		}
	}
}

func TestDecodePythonUpstreams(t *testing.T) {
	models, _ := decodeFile(t, "load_balance.yaml")
	byName := map[string]*route.Model{}
	for _, m := range models {
		byName[m.Name] = m
	}
	policies := map[string]string{"gpt-3.5-turbo": "round_robin", "gpt-4": "weighted_round_robin",
		"gpt-4-turbo": "random", "claude-3-opus": "least_conn"}
	for name, policy := range policies {
		m := byName[name]
		if m == nil {
			t.Fatalf("no model %s", name)
		}
		if got := string(m.PolicyRaw); got != `{"policy":"`+policy+`"}` {
			t.Errorf("%s: lb_policy %s, want %s", name, got, policy)
		}
	}
	gpt4 := byName["gpt-4"]
	if gpt4.MaxFails != 2 || len(gpt4.Upstreams) != 2 || gpt4.Upstreams[0].Weight != 5 || gpt4.Upstreams[1].Weight != 1 {
		t.Errorf("gpt-4: max_fails %d, upstreams %d, weights %+v", gpt4.MaxFails, len(gpt4.Upstreams), gpt4.Upstreams)
	}
	if d := time.Duration(byName["gpt-3.5-turbo"].HealthInterval); d != 30*time.Second {
		t.Errorf("health_check_interval 30 became %v", d)
	}
	// A model-level timeout applies to upstreams without their own.
	for _, u := range byName["gpt-4-turbo"].Upstreams {
		if time.Duration(u.Timeout) != 120*time.Second {
			t.Errorf("gpt-4-turbo upstream timeout %v, want the model's 120s", time.Duration(u.Timeout))
		}
	}
}

func TestDecodeEnvKeys(t *testing.T) {
	models, _ := decodeFile(t, "production.yaml")
	for _, m := range models {
		if k := m.Upstreams[0].APIKey; k != "{env.OPENAI_API_KEY}" {
			t.Errorf("%s: api_key %q, want {env.OPENAI_API_KEY}", m.Name, k)
		}
	}
}

func TestDecodeErrors(t *testing.T) {
	for _, tc := range []struct{ file, want string }{
		{"models:\n  a:\n    api_key: x\n", "line 2: model 'a': api_base is missing"},
		{"models:\n  a:\n    api_base: http://x\n    adapter: cohere\n", "line 2: model 'a': adapter 'cohere' needs the provider module llm.route.providers.cohere"},
		{"models:\n  a:\n    api_base: http://x\n    timeout: soon\n", "line 4: cannot unmarshal"},
		{"models:\n  a:\n    upstreams:\n      - api_base: http://x\n    load_balance_strategy: fastest\n", "load_balance_strategy 'fastest' is not"},
		{"models:\n  - name: a\n    upstream: []\n", `line 2: model 'a': json: unknown field "upstream"`},
		{"models: {}\n", "line 1: 'models' holds no model"},
		{"server: {}\n", "no top-level 'models'"},
		{"models:\n  a: [\n", "yaml: line"},
	} {
		_, _, err := route.DecodeModels([]byte(tc.file))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want one with %q", tc.file, err, tc.want)
		}
	}
}

func FuzzDecodeModels(f *testing.F) {
	seeds, _ := filepath.Glob(filepath.Join("..", "testdata", "llmoneapi", "*.yaml"))
	for _, s := range seeds {
		data, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(`{"models":[{"name":"a","upstreams":[{"provider":{"name":"openai"},"url":"http://x"}]}]}`))
	f.Add([]byte("models:\n  a:\n    api_base: ${X}\n    price_per_1k_prompt_tokens: -1\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		models, _, err := route.DecodeModels(data)
		if err != nil {
			return
		}
		if len(models) == 0 {
			t.Fatal("no error and no model")
		}
		for _, m := range models {
			if _, err := json.Marshal(m); err != nil {
				t.Fatalf("model %q does not marshal: %v", m.Name, err)
			}
		}
	})
}

// pythonModels is an LLM One API models section serving the given models
// from the fake provider.
func pythonModels(upstream string, names ...string) string {
	var b strings.Builder
	b.WriteString("models:\n")
	for _, n := range names {
		b.WriteString("  " + n + ":\n    api_base: " + upstream + "\n    api_key: ${FILE_TEST_UPSTREAM_KEY}\n    timeout: 30\n")
	}
	return b.String()
}

// TestFileCatalogReload edits the models file while clients call the
// gateway: no call fails, a new model serves within a second, a broken edit
// keeps the models that serve.
func TestFileCatalogReload(t *testing.T) {
	t.Setenv("FILE_TEST_UPSTREAM_KEY", llmtest.UpstreamKey)
	dir := t.TempDir()
	path := filepath.Join(dir, "models.yaml")
	// The fake's URL is known once it runs: write a first file after Start.
	write := func(content string) {
		t.Helper()
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	}
	write(pythonModels("http://127.0.0.1:1/v1", "old-model"))
	g := llmtest.Start(t, nil, `:{PORT} {
	llm_route {
		file `+path+`
	}
}`)
	write(pythonModels(g.Upstream, "old-model"))
	client := llmtest.OpenAI(g.URL, "sk-client")
	ctx := context.Background()
	chat := func(model string) error {
		_, err := client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{
			Model:    model,
			Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")},
		})
		return err
	}
	waitFor := func(what string, within time.Duration, ok func() bool) {
		t.Helper()
		deadline := time.Now().Add(within)
		for !ok() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within %v", what, within)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitFor("old-model serving from the fake", 2*time.Second, func() bool { return chat("old-model") == nil })

	// Clients keep calling old-model through every edit below.
	var calls, failures atomic.Int64
	var firstErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				calls.Add(1)
				if err := chat("old-model"); err != nil {
					failures.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
				}
			}
		}()
	}

	write(pythonModels(g.Upstream, "old-model", "new-model"))
	edited := time.Now()
	waitFor("new-model serving", time.Second, func() bool { return chat("new-model") == nil })
	t.Logf("new-model served %v after the edit", time.Since(edited).Round(time.Millisecond))

	// A broken edit: the models that serve stay.
	write("models:\n  old-model: [\n")
	time.Sleep(time.Second)
	if err := chat("new-model"); err != nil {
		t.Errorf("after a broken edit, new-model fails: %v", err)
	}
	// An edit that parses but does not provision (an unset key) is broken too.
	write(strings.ReplaceAll(pythonModels(g.Upstream, "old-model"), "FILE_TEST_UPSTREAM_KEY", "FILE_TEST_UNSET_KEY"))
	time.Sleep(time.Second)
	if err := chat("new-model"); err != nil {
		t.Errorf("after an edit with an unset key, new-model fails: %v", err)
	}

	// Dropping a model takes it away.
	write(pythonModels(g.Upstream, "old-model"))
	waitFor("new-model gone", time.Second, func() bool {
		var apiErr *openai.Error
		err := chat("new-model")
		return err != nil && errorAs(err, &apiErr) && apiErr.StatusCode == 404
	})
	close(stop)
	wg.Wait()
	if n := failures.Load(); n > 0 {
		t.Errorf("%d of %d calls to old-model failed during the edits, the first: %v", n, calls.Load(), firstErr.Load())
	}
	if calls.Load() < 20 {
		t.Errorf("only %d calls ran during the edits", calls.Load())
	}
}

// TestFileCatalogKeepsHealth: an upstream taken out by failures stays out
// across an edit of the file that keeps it.
func TestFileCatalogKeepsHealth(t *testing.T) {
	path := filepath.Join(t.TempDir(), "models.json")
	g := llmtest.Start(t, nil, `:{PORT} {
	respond 404
}`)
	own := func(models ...string) string {
		var items []string
		for _, m := range models {
			items = append(items, `{"name":"`+m+`","max_fails":1,"lb_retries":0,"upstreams":[{"provider":{"name":"openai"},"url":"`+g.Upstream+`","api_key":"bad-key"}]}`)
		}
		return `{"models":[` + strings.Join(items, ",") + `]}`
	}
	if err := os.WriteFile(path, []byte(own("a")), 0o600); err != nil {
		t.Fatal(err)
	}
	g.Load(`:{PORT} {
	llm_route {
		file ` + path + ` {
			interval 50ms
		}
	}
}`)
	client := llmtest.OpenAI(g.URL, "sk-client")
	_, err := client.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{
		Model: "a", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")},
	})
	if err == nil {
		t.Fatal("a call with a key the upstream refuses succeeded")
	}
	before := upstreamState(t, g, "a")
	if before["healthy"] != false {
		t.Fatalf("the refused upstream is still healthy: %v", before)
	}
	if err := os.WriteFile(path, []byte(own("a", "b")), 0o600); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Second)
	for upstreamState(t, g, "b") == nil {
		if time.Now().After(deadline) {
			t.Fatal("model b never appeared")
		}
		time.Sleep(20 * time.Millisecond)
	}
	after := upstreamState(t, g, "a")
	if after["healthy"] != false || after["cooldown_reason"] != before["cooldown_reason"] || after["requests"] != before["requests"] {
		t.Errorf("the upstream's state changed across the edit:\nbefore %v\n after %v", before, after)
	}
}

// upstreamState returns the first upstream of model in /llm/upstreams, or
// nil when the model is not there.
func upstreamState(t *testing.T, g *llmtest.Gateway, model string) map[string]any {
	t.Helper()
	resp, err := httpGet(g.AdminURL + "/llm/upstreams")
	if err != nil {
		t.Fatal(err)
	}
	var view struct {
		Models []struct {
			Model     string           `json:"model"`
			Upstreams []map[string]any `json:"upstreams"`
		} `json:"models"`
	}
	if err := json.Unmarshal(resp, &view); err != nil {
		t.Fatalf("%v: %s", err, resp)
	}
	for _, m := range view.Models {
		if m.Model == model {
			return m.Upstreams[0]
		}
	}
	return nil
}

// TestFileCatalogBadStart: a file that does not load fails the config,
// naming the file, the line and the reason.
func TestFileCatalogBadStart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "models.yaml")
	if err := os.WriteFile(path, []byte("models:\n  ok:\n    api_base: http://127.0.0.1:1/v1\n  broken:\n    adapter: openai\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(`{
	admin off
}
:0 {
	llm_route {
		file `+path+`
	}
}`), nil)
	if err != nil {
		t.Fatal(err)
	}
	var c caddy.Config
	if err := json.Unmarshal(cfg, &c); err != nil {
		t.Fatal(err)
	}
	err = caddy.Validate(&c)
	want := path + ":4: model 'broken': api_base is missing"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("error %v, want one with %q", err, want)
	}
}

func TestFileCaddyfile(t *testing.T) {
	h, err := parse(`llm_route {
		file /etc/llm/models.yaml {
			interval 5s
		}
	}`)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := json.Marshal(h.CatalogsRaw)
	if want := `[{"interval":5000000000,"path":"/etc/llm/models.yaml","source":"file"}]`; string(got) != want {
		t.Errorf("JSON %s, want %s", got, want)
	}
	for src, want := range map[string]string{
		"llm_route {\n file\n}":                          "the path of a models file is required",
		"llm_route {\n file a b\n}":                      "wrong argument count",
		"llm_route {\n file a {\n every 1s\n }\n}":       "unknown subdirective 'every' in file",
		"llm_route {\n file a {\n interval never\n }\n}": "not a positive duration",
	} {
		if _, err := parse(src); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v, want %q", src, err, want)
		}
	}
}

func errorAs(err error, target any) bool { return errors.As(err, target) }

func httpGet(url string) ([]byte, error) {
	resp, err := http.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return io.ReadAll(resp.Body)
}
