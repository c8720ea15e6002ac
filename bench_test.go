package llmoneapi_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	_ "github.com/llmoneapi/llmoneapi"
	"github.com/llmoneapi/llmoneapi/internal/fakellm"
)

// BenchmarkChain is one call through whole handler chains, in process: no
// client connection, the handlers called as Caddy calls them, in front of a
// fake provider on loopback in the same process (20 chunks, as bench/run.sh
// uses). route is llm_route alone; full adds llm_stats (memory and prometheus
// recorders) and llm_auth (a static key with rpm and tpm limits in memory).
func BenchmarkChain(b *testing.B) {
	fake := httptest.NewServer(&fakellm.Server{KeepRequests: -1, Behavior: fakellm.Behavior{Chunks: 20}})
	b.Cleanup(fake.Close)
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	b.Cleanup(cancel)
	load := func(id, config string) caddyhttp.MiddlewareHandler {
		mod, err := ctx.LoadModuleByID(id, json.RawMessage(config))
		if err != nil {
			b.Fatalf("%s: %v", id, err)
		}
		return mod.(caddyhttp.MiddlewareHandler)
	}
	route := load("http.handlers.llm_route", `{"catalogs":[{"source":"config","models":[{"name":"bench","upstreams":[`+
		`{"provider":{"name":"openai"},"url":"`+fake.URL+`/v1","api_key":"sk-mock"}]}]}]}`)
	auth := load("http.handlers.llm_auth", `{"authenticators":[{"source":"static","id_secret":"bench",`+
		`"keys":[{"key":"sk-bench","user":"bench","limits":{"rpm":1000000000,"tpm":1000000000000}}]}],"limits":{"store":"memory"}}`)
	stats := load("http.handlers.llm_stats", `{"recorders":[{"recorder":"memory"},{"recorder":"prometheus"}]}`)

	// then chains handlers the way a Caddy route does.
	var then func(hs ...caddyhttp.MiddlewareHandler) caddyhttp.Handler
	then = func(hs ...caddyhttp.MiddlewareHandler) caddyhttp.Handler {
		if len(hs) == 0 {
			return caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil })
		}
		next := then(hs[1:]...)
		return caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error { return hs[0].ServeHTTP(w, r, next) })
	}
	chains := []struct {
		name string
		h    caddyhttp.Handler
	}{
		{"route", then(route)},
		{"full", then(stats, auth, route)},
	}
	const msgs = `"messages":[{"role":"user","content":"Summarise in one sentence why a gateway helps."}]`
	for _, sc := range []struct{ name, body string }{
		{"chat", `{"model":"bench",` + msgs + `}`},
		{"stream", `{"model":"bench","stream":true,` + msgs + `}`},
	} {
		for _, c := range chains {
			b.Run(sc.name+"/"+c.name, func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					w := httptest.NewRecorder()
					r := httptest.NewRequest(http.MethodPost, "/v1/chat/completions", strings.NewReader(sc.body))
					r.Header.Set("Authorization", "Bearer sk-bench")
					r.Header.Set("Content-Type", "application/json")
					r = caddyhttp.PrepareRequest(r, caddy.NewReplacer(), w, &caddyhttp.Server{})
					if err := c.h.ServeHTTP(w, r); err != nil || w.Code != http.StatusOK || !strings.Contains(w.Body.String(), "chunk19") {
						b.Fatalf("%v %d %.300s", err, w.Code, w.Body)
					}
				}
			})
		}
	}
}
