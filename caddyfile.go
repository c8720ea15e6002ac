package llmoneapi

import (
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"

	"github.com/llmoneapi/llmoneapi/auth"
	"github.com/llmoneapi/llmoneapi/route"
	"github.com/llmoneapi/llmoneapi/stats"
)

// The directives run in this order: llm_stats first, so that its record
// covers everything after it, then llm_auth, then llm_route. Plugins can
// only be ordered against standard directives, so llm_stats and llm_auth go
// before basic_auth (registering llm_stats first puts it in front of
// llm_auth), and llm_route goes where reverse_proxy would.
func init() {
	httpcaddyfile.RegisterHandlerDirective("llm_stats", stats.ParseCaddyfile)
	httpcaddyfile.RegisterHandlerDirective("llm_auth", auth.ParseCaddyfile)
	httpcaddyfile.RegisterHandlerDirective("llm_route", route.ParseCaddyfile)
	httpcaddyfile.RegisterHandlerDirective("llm_dashboard", stats.ParseDashboardCaddyfile)
	httpcaddyfile.RegisterDirectiveOrder("llm_stats", httpcaddyfile.Before, "basic_auth")
	httpcaddyfile.RegisterDirectiveOrder("llm_auth", httpcaddyfile.Before, "basic_auth")
	httpcaddyfile.RegisterDirectiveOrder("llm_route", httpcaddyfile.Before, "reverse_proxy")
	httpcaddyfile.RegisterDirectiveOrder("llm_dashboard", httpcaddyfile.After, "metrics")
}
