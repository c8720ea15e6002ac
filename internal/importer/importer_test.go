package importer_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/openai/openai-go/v3"
	"github.com/spf13/cobra"

	"github.com/llmoneapi/llmoneapi/internal/fakellm"
	"github.com/llmoneapi/llmoneapi/internal/importer"
	"github.com/llmoneapi/llmoneapi/internal/llmtest"
)

func TestMain(m *testing.M) { llmtest.Main(m) }

// examples are the LLM One API configs of testdata, with a client key and a
// model each serves.
var examples = []struct{ file, key, model string }{
	{"development.yaml", "sk-dev-test-key", "gpt-3.5-turbo"},
	{"production.yaml", "sk-prod-key-2", "gpt-4"},
	{"load_balance.yaml", "sk-lb-client-key", "gpt-4"},
	{"with_pricing.yaml", "sk-pricing-client", "claude-3-sonnet"},
}

func read(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "..", "testdata", "llmoneapi", name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// TestImportValidates: each example's Caddyfile adapts and Caddy validates
// it, and no upstream key is in it.
func TestImportValidates(t *testing.T) {
	t.Setenv("OPENAI_API_KEY", "sk-from-env")
	for _, ex := range examples {
		t.Run(ex.file, func(t *testing.T) {
			res, err := importer.Convert(read(t, ex.file))
			if err != nil {
				t.Fatal(err)
			}
			for name, v := range res.Env {
				t.Setenv(name, v)
				if strings.Contains(res.Caddyfile, v) {
					t.Errorf("the upstream key of %s is in the Caddyfile", name)
				}
			}
			if strings.Contains(res.Caddyfile, ex.key) {
				t.Error("a client key is in the Caddyfile")
			}
			cfg, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte("{\n\tadmin off\n}\n"+res.Caddyfile), nil)
			if err != nil {
				t.Fatalf("adapting: %v\n%s", err, res.Caddyfile)
			}
			var c caddy.Config
			if err := json.Unmarshal(cfg, &c); err != nil {
				t.Fatal(err)
			}
			if err := caddy.Validate(&c); err != nil {
				t.Fatalf("validating: %v\n%s", err, res.Caddyfile)
			}
		})
	}
}

// oldServers tells the errors of a call that reached the servers of the
// config before a reload: no answer, or a 401 for a key only the new one has.
func oldServers(err error) bool {
	var apiErr *openai.Error
	return !errors.As(err, &apiErr) || apiErr.StatusCode == http.StatusUnauthorized
}

var baseURL = regexp.MustCompile(`https://[^"\s]+`)

// TestImportServes: each example, its upstreams pointed at the fake
// provider, serves a call of its client key through the imported config.
func TestImportServes(t *testing.T) {
	fake := &fakellm.Server{}
	g := llmtest.Start(t, fake, ":{PORT} {\n\trespond 404\n}")
	t.Setenv("OPENAI_API_KEY", "sk-from-env")
	for _, ex := range examples {
		t.Run(ex.file, func(t *testing.T) {
			yaml := baseURL.ReplaceAllString(string(read(t, ex.file)), g.Upstream)
			res, err := importer.Convert([]byte(yaml))
			if err != nil {
				t.Fatal(err)
			}
			for name, v := range res.Env {
				t.Setenv(name, v)
			}
			g.Load(strings.Replace(res.Caddyfile, ":8000 {", ":{PORT} {", 1))
			client := llmtest.OpenAI(g.URL, ex.key)
			params := openai.ChatCompletionNewParams{
				Model:    ex.model,
				Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")},
			}
			// Right after a reload a connection can land on the old servers
			// as they close: unanswered, or answered by the previous
			// example's config, which does not know this key. That is the
			// reload, not the imported config, so those get a few retries.
			resp, err := client.Chat.Completions.New(context.Background(), params)
			for try := 0; try < 20 && err != nil && oldServers(err); try++ {
				time.Sleep(50 * time.Millisecond)
				resp, err = client.Chat.Completions.New(context.Background(), params)
			}
			if err != nil {
				t.Fatalf("%s through the imported config: %v\n%s", ex.model, err, res.Caddyfile)
			}
			if len(resp.Choices) == 0 || resp.Choices[0].Message.Content == "" {
				t.Errorf("empty answer: %+v", resp)
			}
			other := llmtest.OpenAI(g.URL, "sk-not-a-key")
			if _, err := other.Models.List(context.Background()); err == nil {
				t.Error("a key not in api_keys was let in")
			}
		})
	}
}

// runLLM runs `caddy llm <args...>` in this process, through the command
// Caddy's command line has registered.
func runLLM(args ...string) (stdout, stderr string, err error) {
	llm, ok := caddycmd.Commands()["llm"]
	if !ok {
		return "", "", errors.New("no 'caddy llm' command is registered")
	}
	cmd := &cobra.Command{Use: "llm", SilenceUsage: true, SilenceErrors: true}
	llm.CobraFunc(cmd)
	var o, e bytes.Buffer
	cmd.SetOut(&o)
	cmd.SetErr(&e)
	cmd.SetArgs(args)
	err = cmd.Execute()
	return o.String(), e.String(), err
}

// TestImportCommand runs `caddy llm import` as a user would.
func TestImportCommand(t *testing.T) {
	dir := t.TempDir()
	out, env := filepath.Join(dir, "Caddyfile"), filepath.Join(dir, ".env")
	src := filepath.Join("..", "..", "testdata", "llmoneapi", "load_balance.yaml")
	stdout, stderr, err := runLLM("import", src, "--output", out, "--envfile", env)
	if err != nil {
		t.Fatalf("%v\n%s%s", err, stdout, stderr)
	}
	cf, _ := os.ReadFile(out)
	if !strings.Contains(string(cf), "lb_policy weighted_round_robin") {
		t.Errorf("Caddyfile:\n%s", cf)
	}
	envs, _ := os.ReadFile(env)
	if !strings.Contains(string(envs), "=sk-backup-key\n") {
		t.Errorf("envfile:\n%s", envs)
	}
	if st, err := os.Stat(env); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("envfile mode: %v %v", st.Mode(), err)
	}
	if !strings.Contains(stderr, "note: rate_limit: 100 requests per minute now count per key") {
		t.Errorf("stderr:\n%s", stderr)
	}
}
