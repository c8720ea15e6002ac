package route_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/llmoneapi/llmoneapi/internal/fakellm"
	"github.com/llmoneapi/llmoneapi/llm"
	"github.com/llmoneapi/llmoneapi/route"
	_ "github.com/llmoneapi/llmoneapi/route/providers"
)

func parse(src string) (*route.Handler, error) {
	var h route.Handler
	err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(src))
	return &h, err
}

// TestCaddyfileRouting: every routing subdirective has its JSON form.
func TestCaddyfileRouting(t *testing.T) {
	h, err := parse(`llm_route {
		model gpt-4o {
			upstream openai https://api.openai.com/v1 {env.KEY_1} {
				weight 3
				transport {
					dial_timeout 5s
					tls_server_name api.internal
					tls_insecure_skip_verify
					proxy http://proxy:3128
					max_conns_per_host 64
					max_idle_conns_per_host 16
				}
			}
			upstream openai https://backup.example.com/v1 {env.BACKUP_KEY} {
				model gpt-4o-2024-08-06
			}
			price 2.5 10 1.25
			lb_policy weighted_round_robin
			lb_retries 2
			lb_try_duration 30s
			max_fails 3
			fail_duration 30s
			first_byte_timeout 15s
			stream_idle_timeout 60s
			stream_commit first_content
			timeout 5m
			health_uri /models
			health_interval 30s
			fallback gpt-4o-mini claude-sonnet
		}
	}`)
	if err != nil {
		t.Fatal(err)
	}
	got := string(caddyconfig.JSON(h, nil))
	want := `{"catalogs":[{"models":[{"fail_duration":30000000000,"fallbacks":["gpt-4o-mini","claude-sonnet"],"first_byte_timeout":15000000000,` +
		`"health_interval":30000000000,"health_uri":"/models","lb_policy":{"policy":"weighted_round_robin"},"lb_retries":2,"lb_try_duration":30000000000,` +
		`"max_fails":3,"name":"gpt-4o","price":{"cached_input":1.25,"input":2.5,"output":10},"stream_commit":"first_content","stream_idle_timeout":60000000000,"timeout":300000000000,"upstreams":[` +
		`{"api_key":"{env.KEY_1}","provider":{"name":"openai"},"transport":{"dial_timeout":5000000000,"max_conns_per_host":64,"max_idle_conns_per_host":16,"proxy":"http://proxy:3128","tls_insecure_skip_verify":true,"tls_server_name":"api.internal"},"url":"https://api.openai.com/v1","weight":3},` +
		`{"api_key":"{env.BACKUP_KEY}","model":"gpt-4o-2024-08-06","provider":{"name":"openai"},"url":"https://backup.example.com/v1"}]}],"source":"config"}]}`
	if got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
}

func TestCaddyfile(t *testing.T) {
	h, err := parse(`llm_route {
		max_body_size 1MiB
		model gpt-4o-mini {
			upstream openai https://api.openai.com/v1 {env.OPENAI_API_KEY} {
				model gpt-4o-mini-2024-07-18
				header X-Team ml
				header X-Team ops
				timeout 30s
			}
			upstream openai http://127.0.0.1:8000/v1
		}
	}`)
	if err != nil {
		t.Fatal(err)
	}
	got := string(caddyconfig.JSON(h, nil))
	want := `{"catalogs":[{"models":[{"name":"gpt-4o-mini","upstreams":[` +
		`{"api_key":"{env.OPENAI_API_KEY}","headers":{"X-Team":["ml","ops"]},"model":"gpt-4o-mini-2024-07-18","provider":{"name":"openai"},"timeout":30000000000,"url":"https://api.openai.com/v1"},` +
		`{"provider":{"name":"openai"},"url":"http://127.0.0.1:8000/v1"}]}],"source":"config"}],"max_body_size":1048576}`
	if got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
}

// TestCaddyfileProviderOptions: the subdirectives of an upstream block that
// are not the upstream's own are its provider's options, in the provider's
// JSON, next to the upstream's own.
func TestCaddyfileProviderOptions(t *testing.T) {
	h, err := parse(`llm_route {
		model claude {
			upstream anthropic https://api.anthropic.com {env.ANTHROPIC_KEY} {
				model claude-sonnet-4-5
				version 2024-01-01
				beta prompt-caching-2024-07-31
				weight 2
				beta output-128k-2025-02-19 token-efficient-tools-2025-02-19
				max_tokens 8192
			}
		}
		model flash {
			upstream gemini https://generativelanguage.googleapis.com {
				legacy_schema
			}
		}
		model gpt-4o {
			upstream azure https://res.openai.azure.com {env.AZURE_KEY} {
				deployment prod-4o
				api_version 2025-01-01-preview
				header X-Team ml
			}
			upstream azure https://res2.openai.azure.com
		}
	}`)
	if err != nil {
		t.Fatal(err)
	}
	got := string(caddyconfig.JSON(h, nil))
	want := `{"catalogs":[{"models":[` +
		`{"name":"claude","upstreams":[{"api_key":"{env.ANTHROPIC_KEY}","model":"claude-sonnet-4-5","provider":{"beta":["prompt-caching-2024-07-31","output-128k-2025-02-19","token-efficient-tools-2025-02-19"],"max_tokens":8192,"name":"anthropic","version":"2024-01-01"},"url":"https://api.anthropic.com","weight":2}]},` +
		`{"name":"flash","upstreams":[{"provider":{"legacy_schema":true,"name":"gemini"},"url":"https://generativelanguage.googleapis.com"}]},` +
		`{"name":"gpt-4o","upstreams":[{"api_key":"{env.AZURE_KEY}","headers":{"X-Team":["ml"]},"provider":{"api_version":"2025-01-01-preview","deployment":"prod-4o","name":"azure"},"url":"https://res.openai.azure.com"},` +
		`{"provider":{"name":"azure"},"url":"https://res2.openai.azure.com"}]}],"source":"config"}]}`
	if got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	// The JSON loads: the options reach the provider modules.
	t.Setenv("ANTHROPIC_KEY", "sk-ant-test")
	t.Setenv("AZURE_KEY", "azure-test")
	if _, err := load(t, got); err != nil {
		t.Fatal(err)
	}
}

func TestCaddyfileErrors(t *testing.T) {
	tests := []struct{ src, want string }{
		{`llm_route {
			model m {
				upstream nosuch http://x
			}
		}`, "unknown provider 'nosuch'; known providers: anthropic, azure, gemini, openai, parrot, at Testfile:3"}, // parrot: ExampleProvider's
		{`llm_route {
			model m {
				upstream openai
			}
		}`, "usage: upstream <provider> <base_url> [<api_key>], at Testfile:3"},
		{`llm_route {
			model m {
			}
		}`, "model 'm' has no upstream"},
		{`llm_route {
			model
		}`, "model: a model name is required"},
		{`llm_route {
			model m {
				upstream openai http://x {
					timeout soon
				}
			}
		}`, "timeout: 'soon' is not a positive duration"},
		{`llm_route {
			model m {
				upstream openai http://x {
					frobnicate 3
				}
			}
		}`, "unknown subdirective 'frobnicate' in upstream"},
		{`llm_route {
			model m {
				upstream openai http://x {
					version 2024-01-01
				}
			}
		}`, "unknown subdirective 'version' in upstream: an upstream takes model, weight, header, timeout, transport, and provider openai takes responses, at Testfile:4"},
		{`llm_route {
			model m {
				upstream openai http://x {
					responses sometimes
				}
			}
		}`, "responses: 'sometimes' is none of native, translate, auto, at Testfile:4"},
		{`llm_route {
			model m {
				upstream anthropic http://x {
					deployment d
				}
			}
		}`, "unknown subdirective 'deployment' in upstream: an upstream takes model, weight, header, timeout, transport, and provider anthropic takes version, beta, max_tokens, at Testfile:4"},
		{`llm_route {
			model m {
				upstream azure http://x {
					model gpt-4o
					version 2024-01-01
				}
			}
		}`, "unknown subdirective 'version' in upstream: an upstream takes model, weight, header, timeout, transport, and provider azure takes deployment, api_version, at Testfile:5"},
		{`llm_route {
			model m {
				upstream gemini http://x {
					legacy_schema yes
				}
			}
		}`, "legacy_schema takes no value, at Testfile:4"},
		{`llm_route {
			model m {
				upstream gemini http://x {
					api_version v1
				}
			}
		}`, "provider gemini takes legacy_schema"},
		{`llm_route {
			model m {
				upstream anthropic http://x {
					max_tokens lots
				}
			}
		}`, "max_tokens: 'lots' is not a whole number of at least 1, at Testfile:4"},
		{`llm_route {
			model m {
				upstream anthropic http://x {
					version
				}
			}
		}`, "version: want one value, at Testfile:4"},
		{`llm_route {
			model m {
				upstream anthropic http://x {
					beta
				}
			}
		}`, "beta: name at least one anthropic-beta flag"},
		{`llm_route {
			model m {
				upstream azure http://x {
					deployment a b
				}
			}
		}`, "deployment: want one value, got more, at Testfile:4"},

		{`llm_route {
			model m {
				upstream openai http://x {
					weight 0
				}
			}
		}`, "weight: '0' is not a whole number of at least 1"},
		{`llm_route {
			model m {
				upstream openai http://x
				lb_policy fastest
			}
		}`, "lb_policy: unknown policy 'fastest'; known policies: first, least_conn, random, round_robin, weighted_round_robin"},
		{`llm_route {
			model m {
				upstream openai http://x
				lb_retries -1
			}
		}`, "lb_retries: '-1' is not a whole number of at least 0"},
		{`llm_route {
			model m {
				upstream openai http://x
				stream_idle_timeout never
			}
		}`, "stream_idle_timeout: 'never' is not a positive duration"},
		{`llm_route {
			model m {
				upstream openai http://x
				stream_commit first_token
			}
		}`, "stream_commit: want first_event or first_content"},
		{`llm_route {
			model m {
				upstream openai http://x
				fallback
			}
		}`, "fallback: name at least one model"},
		{`llm_route {
			model m {
				upstream openai http://x
				health_uri models
			}
		}`, "health_uri: want a path such as /models"},
		{`llm_route {
			model m {
				upstream openai http://x
				price 1
			}
		}`, "price: want <input> <output> [<cached input>]"},
		{`llm_route {
			model m {
				upstream openai http://x
				price 1 cheap
			}
		}`, "price: 'cheap' is not a price"},
		{`llm_route {
			model m {
				upstream openai http://x {
					transport {
						max_conns_per_host many
					}
				}
			}
		}`, "max_conns_per_host: 'many' is not a whole number"},
		{`llm_route {
			max_body_size lots
		}`, "max_body_size: 'lots' is not a size"},
		{`llm_route {
			modle m
		}`, "unknown llm_route subdirective 'modle': it is not an option, and no model catalog module llm.route.modle is installed"},
		{`llm_route extra`, "wrong argument count"},
	}
	for _, tt := range tests {
		_, err := parse(tt.src)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s\ngot error %v, want %q", tt.src, err, tt.want)
		}
	}
}

// load provisions a handler from its JSON, as Caddy does at config load.
func load(t *testing.T, config string) (*route.Handler, error) {
	t.Helper()
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	mod, err := ctx.LoadModuleByID("http.handlers.llm_route", json.RawMessage(config))
	if err != nil {
		return nil, err
	}
	return mod.(*route.Handler), nil
}

func TestProvisionErrors(t *testing.T) {
	up := `{"provider":{"name":"openai"},"url":"http://127.0.0.1:1/v1"}`
	tests := []struct{ config, want string }{
		{`{"catalogs":[{"source":"config","models":[{"name":"m","upstreams":[` + up + `]},{"name":"m","upstreams":[` + up + `]}]}]}`,
			"model 'm' is defined twice"},
		{`{"catalogs":[{"source":"config","models":[{"name":"m","upstreams":[{"provider":{"name":"openai"}}]}]}]}`,
			"model 'm', upstream 1: no url"},
		{`{"catalogs":[{"source":"config","models":[{"name":"m","upstreams":[{"provider":{"name":"openai"},"url":"api.openai.com"}]}]}]}`,
			"url 'api.openai.com' is not an http:// or https:// URL"},
		{`{"catalogs":[{"source":"config","models":[{"name":"m","upstreams":[{"provider":{"name":"openai"},"url":"https://u:p@x/v1"}]}]}]}`,
			"must not carry credentials"},
		{`{"catalogs":[{"source":"config","models":[{"name":"m","upstreams":[{"url":"http://x"}]}]}]}`,
			"model 'm', upstream 1: no provider"},
		{`{"catalogs":[{"source":"config","models":[{"name":"m","upstreams":[{"provider":{"name":"nosuch"},"url":"http://x"}]}]}]}`,
			"unknown module: llm.route.providers.nosuch"},
		{`{"catalogs":[{"source":"config","models":[{"name":"","upstreams":[` + up + `]}]}]}`,
			"model without a name"},
		{`{"catalogs":[{"source":"config","models":[{"name":"m"}]}]}`,
			"model 'm' has no upstream"},
		{`{}`, "llm_route serves no model"},
		{`{"catalogs":[{"source":"config","models":[{"name":"m","upstreams":[{"provider":{"name":"openai"},"url":"http://x","api_key":"{env.LLMONEAPI_UNSET_KEY}"}]}]}]}`,
			"model 'm', upstream 1: api_key '{env.LLMONEAPI_UNSET_KEY}' of http://x resolves to nothing"},
		{`{"catalogs":[{"source":"config","models":[{"name":"m","upstreams":[` + up + `],"fallbacks":["nosuch"]}]}]}`,
			"model 'm': fallback 'nosuch' is not a model of this llm_route"},
		{`{"catalogs":[{"source":"config","models":[{"name":"m","upstreams":[` + up + `,` + up + `]}]}]}`,
			"model 'm': upstreams 1 and 2 are the same"},
		{`{"catalogs":[{"source":"config","models":[{"name":"m","upstreams":[` + up + `],"lb_policy":{"policy":"nosuch"}}]}]}`,
			"unknown module: llm.route.policies.nosuch"},
		{`{"catalogs":[{"source":"config","models":[{"name":"m","upstreams":[` + up + `],"fail_duration":-1}]}]}`,
			"model 'm': fail_duration must not be negative"},
		{`{"catalogs":[{"source":"config","models":[{"name":"m","upstreams":[` + up + `],"stream_commit":"first_byte"}]}]}`,
			"model 'm': stream_commit 'first_byte': want first_event or first_content"},
		{`{"catalogs":[{"source":"config","models":[{"name":"m","upstreams":[` + up + `]}]}],"max_body_size":-1}`,
			"max_body_size must not be negative"},
	}
	for _, tt := range tests {
		_, err := load(t, tt.config)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s\ngot error %v, want %q", tt.config, err, tt.want)
		}
	}
}

// serve sends one request through a handler provisioned from config, with
// {UPSTREAM} replaced by a fake provider's URL.
func serve(t *testing.T, config, method, path, body string) (*httptest.ResponseRecorder, *llm.Call, *fakellm.Server) {
	t.Helper()
	fake := &fakellm.Server{}
	up := httptest.NewServer(fake)
	t.Cleanup(up.Close)
	h, err := load(t, strings.ReplaceAll(config, "{UPSTREAM}", up.URL+"/v1"))
	if err != nil {
		t.Fatal(err)
	}
	w := httptest.NewRecorder()
	r := httptest.NewRequest(method, path, strings.NewReader(body))
	r = caddyhttp.PrepareRequest(r, caddy.NewReplacer(), w, &caddyhttp.Server{})
	if err := h.ServeHTTP(w, r, nil); err != nil {
		t.Fatal(err)
	}
	return w, llm.CallFrom(r), fake
}

const oneModel = `{"catalogs":[{"source":"config","models":[{"name":"m","upstreams":[{"provider":{"name":"openai"},"url":"{UPSTREAM}","model":"m-up"}]}]}]}`

func TestServe(t *testing.T) {
	w, call, fake := serve(t, oneModel, http.MethodPost, "/v1/chat/completions",
		`{"model":"m","messages":[{"role":"user","content":"a b c"}]}`)
	if w.Code != 200 || !strings.Contains(w.Body.String(), `"chunk0 chunk1`) {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
	want := llm.Usage{PromptTokens: 3, CompletionTokens: 5, TotalTokens: 8}
	if call.Usage != want || call.UsageSource != llm.UsageUpstream || call.UpstreamModel != "m-up" ||
		call.Provider != "openai" || call.Endpoint != llm.EndpointChat || call.Status != 200 || call.TTFT <= 0 {
		t.Fatalf("call %+v", call)
	}
	if up, _ := fake.LastRequest(); up.Model != "m-up" {
		t.Fatalf("upstream got model %q", up.Model)
	}
}

func TestServeRoutes(t *testing.T) {
	tests := []struct {
		method, path, body string
		status             int
		code               string
	}{
		{http.MethodGet, "/v1/chat/completions", "", 405, "method_not_allowed"},
		{http.MethodPost, "/v1/models", "", 405, "method_not_allowed"},
		{http.MethodPost, "/v1/images/generations", `{"model":"m"}`, 404, "unknown_endpoint"},
		{http.MethodPost, "/v1/embeddings", `{"input":"x"}`, 400, "missing_model"},
		{http.MethodPost, "/v1/embeddings", `{"model":"x","input":"x"}`, 404, "model_not_found"},
		{http.MethodGet, "/v1/models/nope", "", 404, "model_not_found"},
		{http.MethodGet, "/openai/v1/models/m", "", 200, ""},
		{http.MethodPost, "/prefix/v1/completions", `{"model":"m","prompt":"x"}`, 200, ""},
	}
	for _, tt := range tests {
		w, call, _ := serve(t, oneModel, tt.method, tt.path, tt.body)
		var body struct{ Error struct{ Code string } }
		_ = json.Unmarshal(w.Body.Bytes(), &body)
		if w.Code != tt.status || body.Error.Code != tt.code || call.ErrorCode != tt.code {
			t.Errorf("%s %s: %d %s", tt.method, tt.path, w.Code, w.Body)
		}
		if tt.status == 405 && w.Header().Get("Allow") == "" {
			t.Errorf("%s %s: 405 without Allow", tt.method, tt.path)
		}
	}
}

// TestTLSUpstreamHTTP2: an upstream over HTTPS that offers HTTP/2, as
// OpenAI's, Anthropic's and Gemini's do, is spoken to in HTTP/2, and calls
// at once share its connection instead of opening one each.
func TestTLSUpstreamHTTP2(t *testing.T) {
	fake := &fakellm.Server{Behavior: fakellm.Behavior{Chunks: 3, ChunkDelay: 20 * time.Millisecond}}
	var mu sync.Mutex
	protos, conns := map[string]int{}, map[string]bool{}
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		protos[r.Proto]++
		conns[r.RemoteAddr] = true
		mu.Unlock()
		fake.ServeHTTP(w, r)
	}))
	up.EnableHTTP2 = true
	up.StartTLS()
	t.Cleanup(up.Close)
	h, err := load(t, `{"catalogs":[{"source":"config","models":[{"name":"m","upstreams":[{"provider":{"name":"openai"},`+
		`"url":"`+up.URL+`/v1","transport":{"tls_insecure_skip_verify":true}}]}]}]}`)
	if err != nil {
		t.Fatal(err)
	}
	const calls = 8
	var wg sync.WaitGroup
	for range calls {
		wg.Go(func() {
			w := httptest.NewRecorder()
			r := httptest.NewRequest(http.MethodPost, "/v1/chat/completions",
				strings.NewReader(`{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}`))
			r = caddyhttp.PrepareRequest(r, caddy.NewReplacer(), w, &caddyhttp.Server{})
			if err := h.ServeHTTP(w, r, nil); err != nil || w.Code != http.StatusOK || !strings.Contains(w.Body.String(), "data: [DONE]") {
				t.Errorf("%v %d %.300s", err, w.Code, w.Body)
			}
		})
	}
	wg.Wait()
	if protos["HTTP/2.0"] != calls || len(conns) != 1 {
		t.Fatalf("the upstream saw %v over %d connections, want %d HTTP/2.0 calls over one", protos, len(conns), calls)
	}
}

func TestRoundRobin(t *testing.T) {
	fakes := []*fakellm.Server{{}, {}}
	var ups []string
	for _, f := range fakes {
		s := httptest.NewServer(f)
		t.Cleanup(s.Close)
		ups = append(ups, `{"provider":{"name":"openai"},"url":"`+s.URL+`"}`)
	}
	h, err := load(t, `{"catalogs":[{"source":"config","models":[{"name":"m","upstreams":[`+strings.Join(ups, ",")+`]}]}]}`)
	if err != nil {
		t.Fatal(err)
	}
	for range 4 {
		w := httptest.NewRecorder()
		r := httptest.NewRequest(http.MethodPost, "/v1/embeddings", strings.NewReader(`{"model":"m","input":"x"}`))
		r = caddyhttp.PrepareRequest(r, caddy.NewReplacer(), w, &caddyhttp.Server{})
		if err := h.ServeHTTP(w, r, nil); err != nil || w.Code != 200 {
			t.Fatalf("%v %d %s", err, w.Code, w.Body)
		}
	}
	if fakes[0].Count() != 2 || fakes[1].Count() != 2 {
		t.Fatalf("upstreams got %d and %d requests", fakes[0].Count(), fakes[1].Count())
	}
}

// FuzzUnmarshalCaddyfile checks that no input makes the parser panic.
func FuzzUnmarshalCaddyfile(f *testing.F) {
	f.Add("llm_route {\n model m {\n upstream openai http://x k {\n model y\n header A b\n timeout 1s\n }\n }\n}")
	f.Add("llm_route {\n max_body_size 1MB\n}")
	f.Add("llm_route {\n model m {\n upstream anthropic http://x k {\n version v\n beta a b\n max_tokens 9\n model y\n }\n upstream azure http://x {\n deployment d\n api_version v\n }\n" +
		" upstream gemini http://x {\n legacy_schema\n }\n }\n}")
	f.Add("llm_route {\n model m {\n upstream openai http://x k {\n weight 2\n transport {\n dial_timeout 1s\n proxy none\n tls_insecure_skip_verify\n max_conns_per_host 4\n }\n }\n" +
		" lb_policy least_conn\n lb_retries 1\n lb_try_duration 5s\n max_fails 2\n fail_duration 10s\n first_byte_timeout 2s\n" +
		" stream_idle_timeout 3s\n stream_commit first_content\n timeout 1m\n health_uri /models\n health_interval 5s\n fallback a b\n price 1 2 0.5\n }\n}")
	f.Fuzz(func(t *testing.T, src string) {
		tokens, err := caddyfile.Tokenize([]byte(src), "Fuzzfile")
		if err != nil {
			return
		}
		var h route.Handler
		_ = h.UnmarshalCaddyfile(caddyfile.NewDispenser(tokens))
	})
}

func TestTimeout(t *testing.T) {
	fake := &fakellm.Server{Behavior: fakellm.Behavior{Latency: 2 * time.Second}}
	up := httptest.NewServer(fake)
	t.Cleanup(up.Close)
	h, err := load(t, `{"catalogs":[{"source":"config","models":[{"name":"m","upstreams":[`+
		`{"provider":{"name":"openai"},"url":"`+up.URL+`","timeout":"100ms"}]}]}]}`)
	if err != nil {
		t.Fatal(err)
	}
	for _, body := range []string{`{"model":"m","prompt":"x"}`, `{"model":"m","prompt":"x","stream":true}`} {
		w := httptest.NewRecorder()
		r := httptest.NewRequest(http.MethodPost, "/v1/completions", strings.NewReader(body))
		r = caddyhttp.PrepareRequest(r, caddy.NewReplacer(), w, &caddyhttp.Server{})
		begin := time.Now()
		if err := h.ServeHTTP(w, r, nil); err != nil {
			t.Fatal(err)
		}
		if w.Code != http.StatusGatewayTimeout || !strings.Contains(w.Body.String(), `"code":"upstream_timeout"`) ||
			!strings.Contains(w.Body.String(), "did not answer within 100ms") {
			t.Fatalf("%s: %d %s", body, w.Code, w.Body)
		}
		if d := time.Since(begin); d > time.Second {
			t.Fatalf("%s: answered after %v, the timeout is 100ms", body, d)
		}
		call := llm.CallFrom(r)
		if call.ErrorCode != "upstream_timeout" || len(call.Attempts) != 1 || call.Attempts[0].Outcome != "timeout" ||
			call.Attempts[0].Latency < 100*time.Millisecond || call.Attempts[0].UpstreamID == "" {
			t.Fatalf("%s: call %+v", body, call)
		}
	}
	// The upstream saw its requests cancelled, not left running.
	deadline := time.Now().Add(2 * time.Second)
	for fake.Cancelled() < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if fake.Cancelled() != 2 {
		t.Fatalf("upstream cancelled %d requests, want 2", fake.Cancelled())
	}
}

// BenchmarkServe measures a whole call through the handler, tries and
// health bookkeeping included, against an in-process fake provider with
// two upstreams.
func BenchmarkServe(b *testing.B) {
	var ups []string
	for range 2 {
		s := httptest.NewServer(&fakellm.Server{KeepRequests: -1})
		b.Cleanup(s.Close)
		ups = append(ups, `{"provider":{"name":"openai"},"url":"`+s.URL+`/v1"}`)
	}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	b.Cleanup(cancel)
	mod, err := ctx.LoadModuleByID("http.handlers.llm_route", json.RawMessage(
		`{"catalogs":[{"source":"config","models":[{"name":"m","upstreams":[`+strings.Join(ups, ",")+`]}]}]}`))
	if err != nil {
		b.Fatal(err)
	}
	h := mod.(*route.Handler)
	for _, bc := range []struct{ name, body string }{
		{"chat", `{"model":"m","messages":[{"role":"user","content":"hi"}]}`},
		{"stream", `{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}`},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				w := httptest.NewRecorder()
				r := httptest.NewRequest(http.MethodPost, "/v1/chat/completions", strings.NewReader(bc.body))
				r = caddyhttp.PrepareRequest(r, caddy.NewReplacer(), w, &caddyhttp.Server{})
				if err := h.ServeHTTP(w, r, nil); err != nil || w.Code != 200 {
					b.Fatalf("%v %d %s", err, w.Code, w.Body)
				}
			}
		})
	}
}
