package providers_test

import (
	"context"
	"encoding/json"
	"io"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"

	"github.com/llmoneapi/llmoneapi/llm"
	"github.com/llmoneapi/llmoneapi/route"
)

// upstream provisions a one-upstream model, as llm_route does, and returns
// its upstream.
func upstream(t testing.TB, provider, url string) *route.Upstream {
	t.Helper()
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	var m route.Model
	cfg := `{"name":"m","upstreams":[{"provider":` + provider + `,"url":"` + url + `","api_key":"k-1","model":"up-model"}]}`
	if err := json.Unmarshal([]byte(cfg), &m); err != nil {
		t.Fatal(err)
	}
	if err := m.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Cleanup)
	return m.Upstreams[0]
}

// The base URL may or may not name the API version; requests and health
// probes land on the versioned paths either way.
func TestProviderURLs(t *testing.T) {
	chat, e := llm.ParseRequest([]byte(`{"model":"m","stream":true,"messages":[{"role":"user","content":"x"}]}`))
	if e != nil {
		t.Fatal(e)
	}
	for _, tc := range []struct{ provider, base, request, probe, keyHeader string }{
		{`{"name":"anthropic"}`, "https://api.anthropic.com", "https://api.anthropic.com/v1/messages", "https://api.anthropic.com/v1/models", "x-api-key"},
		{`{"name":"anthropic"}`, "https://proxy.example/anthropic/v1/", "https://proxy.example/anthropic/v1/messages", "https://proxy.example/anthropic/v1/models", "x-api-key"},
		{`{"name":"gemini"}`, "https://generativelanguage.googleapis.com", "https://generativelanguage.googleapis.com/v1beta/models/up-model:streamGenerateContent?alt=sse", "https://generativelanguage.googleapis.com/v1beta/models", "x-goog-api-key"},
		{`{"name":"gemini"}`, "https://g.example/v1", "https://g.example/v1/models/up-model:streamGenerateContent?alt=sse", "https://g.example/v1/models", "x-goog-api-key"},
		{`{"name":"azure","api_version":"2025-01-01-preview"}`, "https://res.openai.azure.com", "https://res.openai.azure.com/openai/deployments/up-model/chat/completions?api-version=2025-01-01-preview", "https://res.openai.azure.com/openai/models?api-version=2025-01-01-preview", "api-key"},
		{`{"name":"azure","deployment":"prod-4o"}`, "https://res.openai.azure.com", "https://res.openai.azure.com/openai/deployments/prod-4o/chat/completions?api-version=2024-10-21", "https://res.openai.azure.com/openai/models?api-version=2024-10-21", "api-key"},
	} {
		u := upstream(t, tc.provider, tc.base)
		p, _ := u.Provider()
		req, err := p.NewRequest(context.Background(), &route.Exchange{Endpoint: llm.EndpointChat, Request: chat, Upstream: u, Model: u.UpstreamModel()})
		if err != nil {
			t.Fatal(err)
		}
		if req.URL.String() != tc.request || req.Header.Get(tc.keyHeader) != "k-1" || req.Header.Get("Authorization") != "" {
			t.Errorf("%s %s: request %s, headers %v", tc.provider, tc.base, req.URL, req.Header)
		}
		probe, err := p.(route.Prober).ProbeRequest(context.Background(), u, "/models")
		if err != nil {
			t.Fatal(err)
		}
		if probe.URL.String() != tc.probe || probe.Header.Get(tc.keyHeader) != "k-1" {
			t.Errorf("%s %s: probe %s, headers %v", tc.provider, tc.base, probe.URL, probe.Header)
		}
	}
}

// A translated provider serves chat only, and a request it cannot read is
// an error before anything is sent.
func TestTranslatedEndpoints(t *testing.T) {
	u := upstream(t, `{"name":"anthropic"}`, "https://api.anthropic.com")
	p, _ := u.Provider()
	emb, _ := llm.ParseRequest([]byte(`{"model":"m","input":"x"}`))
	if _, err := p.NewRequest(context.Background(), &route.Exchange{Endpoint: llm.EndpointEmbeddings, Request: emb, Upstream: u, Model: "m"}); err == nil || !strings.Contains(err.Error(), "embeddings") {
		t.Errorf("embeddings: %v", err)
	}
	bad, _ := llm.ParseRequest([]byte(`{"model":"m","messages":[{"role":"wizard","content":"x"}]}`))
	if _, err := p.NewRequest(context.Background(), &route.Exchange{Endpoint: llm.EndpointChat, Request: bad, Upstream: u, Model: "m"}); err == nil || !strings.Contains(err.Error(), "wizard") {
		t.Errorf("unknown role: %v", err)
	}
}

// The Responses API passes through to OpenAI's <base>/responses and to
// Azure's v1 API, which names the deployment in the body and takes no
// api-version; the key goes as each takes it.
func TestResponsesURLs(t *testing.T) {
	resp, e := llm.ParseRequest([]byte(`{"model":"m","stream":true,"input":"x"}`))
	if e != nil {
		t.Fatal(e)
	}
	for _, tc := range []struct{ provider, base, request, model, keyHeader, keyValue string }{
		{`{"name":"openai"}`, "https://api.openai.com/v1", "https://api.openai.com/v1/responses", "up-model", "Authorization", "Bearer k-1"},
		{`{"name":"openai","responses":"native"}`, "http://vllm:8000/v1/", "http://vllm:8000/v1/responses", "up-model", "Authorization", "Bearer k-1"},
		{`{"name":"azure"}`, "https://res.openai.azure.com", "https://res.openai.azure.com/openai/v1/responses", "up-model", "api-key", "k-1"},
		{`{"name":"azure","deployment":"prod-5","api_version":"2025-01-01-preview"}`, "https://res.openai.azure.com", "https://res.openai.azure.com/openai/v1/responses", "prod-5", "api-key", "k-1"},
	} {
		u := upstream(t, tc.provider, tc.base)
		p, _ := u.Provider()
		req, err := p.NewRequest(context.Background(), &route.Exchange{Endpoint: llm.EndpointResponses, Request: resp, Upstream: u, Model: u.UpstreamModel()})
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(req.Body)
		if req.URL.String() != tc.request || req.Header.Get(tc.keyHeader) != tc.keyValue {
			t.Errorf("%s %s: request %s, headers %v", tc.provider, tc.base, req.URL, req.Header)
		}
		if want := `{"model":"` + tc.model + `","stream":true,"input":"x"}`; string(body) != want {
			t.Errorf("%s: body %s, want %s", tc.provider, body, want)
		}
	}
}
