package providers

import (
	"strings"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/llmoneapi/llmoneapi/route"
)

// optionArg reads the one argument of the provider option d is on.
func optionArg(d *caddyfile.Dispenser) (string, error) {
	name := d.Val()
	if !d.NextArg() {
		return "", d.Errf("%s: want one value", name)
	}
	v := d.Val()
	if d.NextArg() {
		return "", d.Errf("%s: want one value, got more", name)
	}
	return v, nil
}

// unknownOption is the error for a subdirective of an upstream block that
// is neither the upstream's nor its provider's, listing both.
func unknownOption(d *caddyfile.Dispenser, provider string, options ...string) error {
	return d.Errf("unknown subdirective '%s' in upstream: an upstream takes %s, and provider %s takes %s",
		d.Val(), route.UpstreamOptions, provider, strings.Join(options, ", "))
}
