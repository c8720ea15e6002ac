// Package llmoneapi turns Caddy into an LLM API gateway: one OpenAI-compatible
// endpoint, with Caddy's automatic HTTPS, in front of many LLM providers.
//
// Build Caddy with it:
//
//	xcaddy build --with github.com/llmoneapi/llmoneapi
//
// It adds three HTTP handlers, each the host of its own namespace of guest
// modules, so that an authenticator, a model catalog, a provider or a
// statistics sink is one more Caddy module:
//
//   - llm_stats (package stats) starts the record of every request and hands
//     it, finished, to its llm.stats.* recorders;
//   - llm_auth (package auth) checks the client's API key through its
//     llm.auth.* authenticators and the key's model scope;
//   - llm_route (package route) serves the OpenAI API, finds the model in its
//     llm.route.* catalogs and forwards the call through an
//     llm.route.providers.* provider.
//
// This package registers them all, and their Caddyfile directives.
package llmoneapi

import (
	// The packages register their modules when imported.
	_ "github.com/llmoneapi/llmoneapi/auth"
	_ "github.com/llmoneapi/llmoneapi/internal/adminapi"
	_ "github.com/llmoneapi/llmoneapi/internal/importer"
	_ "github.com/llmoneapi/llmoneapi/route"
	_ "github.com/llmoneapi/llmoneapi/route/providers"
	_ "github.com/llmoneapi/llmoneapi/stats"
)
