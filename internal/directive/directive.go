// Package directive holds the Caddyfile parsing that the llm_* handlers
// share: size arguments, and subdirectives that name guest modules.
package directive

import (
	"encoding/json"
	"math"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/dustin/go-humanize"

	"github.com/llmoneapi/llmoneapi/guest"
)

// Size parses the one argument of the subdirective d is on as a size in
// bytes, with units as Caddy's request_body takes them (10MB, 8MiB).
func Size(d *caddyfile.Dispenser) (int64, error) {
	name := d.Val()
	var s string
	if !d.AllArgs(&s) {
		return 0, d.ArgErr()
	}
	size, err := humanize.ParseBytes(s)
	if err != nil || size == 0 || size > math.MaxInt64 {
		return 0, d.Errf("%s: '%s' is not a size such as 10MB or 8MiB", name, s)
	}
	return int64(size), nil
}

// Guest parses the subdirective d is on as the guest module it names, in
// namespace ns, and returns the module and its JSON with the module's name
// under inlineKey. kind says what the namespace holds ("authenticator"),
// for the error a subdirective that names no module gets. A module without
// an UnmarshalCaddyfile method of its own is read by its config fields'
// JSON names (guest.UnmarshalCaddyfile).
func Guest(d *caddyfile.Dispenser, host, ns, inlineKey, kind string) (caddy.Module, json.RawMessage, error) {
	name := d.Val()
	id := ns + "." + name
	info, err := caddy.GetModule(id)
	if err != nil {
		return nil, nil, d.Errf("unknown %s subdirective '%s': it is not an option, and no %s module %s is installed", host, name, kind, id)
	}
	mod := info.New()
	if unm, ok := mod.(caddyfile.Unmarshaler); ok {
		err = unm.UnmarshalCaddyfile(d.NewFromNextSegment())
	} else {
		err = guest.UnmarshalCaddyfile(d.NewFromNextSegment(), mod)
	}
	if err != nil {
		return nil, nil, err
	}
	return mod, caddyconfig.JSONModuleObject(mod, inlineKey, name, nil), nil
}
