package providers

import (
	"context"
	"net/http"
	"net/url"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/llmoneapi/llmoneapi/llm"
	"github.com/llmoneapi/llmoneapi/route"
)

func init() {
	caddy.RegisterModule(Azure{})
}

// Azure speaks Azure OpenAI: the OpenAI API under a resource's deployment
// paths (<base>/openai/deployments/<deployment>/chat/completions
// ?api-version=...), with the key in an api-key header. Bodies pass
// through as for the openai provider, the model renamed and stream usage
// asked for. The Responses API passes through too, to Azure's v1 API
// (<base>/openai/v1/responses, the deployment as the body's model, no
// api-version), the only one of Azure's that serves it. Other client APIs
// (Anthropic's Messages) are translated to chat completions and back. The
// base URL is the resource's endpoint (https://<resource>.openai.azure.com).
type Azure struct {
	// Deployment is the deployment to call. Default: the upstream's model
	// name (the upstream's "model", or the model's own name).
	Deployment string `json:"deployment,omitempty"`
	// APIVersion is the api-version query parameter of the deployment
	// paths (the v1 API's /responses takes none). Default: 2024-10-21.
	APIVersion string `json:"api_version,omitempty"`

	openaiCompat
}

// DefaultAzureAPIVersion is the api-version sent by default, Azure
// OpenAI's generally available version.
const DefaultAzureAPIVersion = "2024-10-21"

// CaddyModule returns the Caddy module information.
func (Azure) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "llm.route.providers.azure",
		New: func() caddy.Module { return new(Azure) },
	}
}

// Provision sets the defaults and the codec for translated client APIs.
func (a *Azure) Provision(ctx caddy.Context) error {
	if a.APIVersion == "" {
		a.APIVersion = DefaultAzureAPIVersion
	}
	a.openaiCompat = newOpenAICompat(ctx)
	return nil
}

// UnmarshalCaddyfile sets the options from the upstream's block:
//
//	upstream azure <endpoint> [<api_key>] {
//		deployment  <name>
//		api_version <version>
//	}
func (a *Azure) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // provider name
	for d.NextBlock(0) {
		var err error
		switch d.Val() {
		case "deployment":
			a.Deployment, err = optionArg(d)
		case "api_version":
			a.APIVersion, err = optionArg(d)
		default:
			return unknownOption(d, "azure", "deployment", "api_version")
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// NewRequest builds the upstream request.
func (a *Azure) NewRequest(ctx context.Context, x *route.Exchange) (*http.Request, error) {
	deployment := a.Deployment
	if deployment == "" {
		deployment = x.Model
	}
	if x.Endpoint == llm.EndpointResponses {
		// The v1 API names the deployment in the body's model.
		x.Model = deployment
	}
	path, body, err := a.body(x)
	if err != nil {
		return nil, err
	}
	u := x.Upstream.BaseURL() + "/openai/deployments/" + url.PathEscape(deployment) + path + "?api-version=" + url.QueryEscape(a.APIVersion)
	if x.Endpoint == llm.EndpointResponses {
		// Azure serves the Responses API only in its v1 API, which takes
		// no api-version and no deployment path.
		u = x.Upstream.BaseURL() + "/openai/v1" + path
	}
	req, err := newRequest(ctx, x, u, body)
	if err != nil {
		return nil, err
	}
	if key := x.Upstream.Key(); key != "" {
		req.Header.Set("api-key", key)
	}
	return req, nil
}

// ProbeRequest is the active health check: GET <base>/openai<uri> with the
// api-version and the key in api-key.
func (a *Azure) ProbeRequest(ctx context.Context, u *route.Upstream, uri string) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.BaseURL()+"/openai"+uri+"?api-version="+url.QueryEscape(a.APIVersion), nil)
	if err != nil {
		return nil, err
	}
	if key := u.Key(); key != "" {
		req.Header.Set("api-key", key)
	}
	return req, nil
}

// Interface guards
var (
	_ route.Provider        = (*Azure)(nil)
	_ route.Prober          = (*Azure)(nil)
	_ caddy.Provisioner     = (*Azure)(nil)
	_ caddyfile.Unmarshaler = (*Azure)(nil)
)
