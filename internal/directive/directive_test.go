package directive

import (
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// plain is a guest without an UnmarshalCaddyfile method.
type plain struct {
	Path  string `json:"path" caddyfile:"arg"`
	Table string `json:"table,omitempty"`
}

func (plain) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "llm.directivetest.plain", New: func() caddy.Module { return new(plain) }}
}

func init() { caddy.RegisterModule(plain{}) }

// A guest without its own Caddyfile parsing is read by its JSON fields.
func TestGuestWithoutUnmarshaler(t *testing.T) {
	d := caddyfile.NewTestDispenser("host {\n plain /var/keys.db {\n table keys\n }\n}")
	d.Next() // host
	d.NextBlock(0)
	mod, raw, err := Guest(d, "host", "llm.directivetest", "source", "test guest")
	if err != nil {
		t.Fatal(err)
	}
	if got := string(raw); got != `{"path":"/var/keys.db","source":"plain","table":"keys"}` {
		t.Errorf("JSON %s", got)
	}
	if p, ok := mod.(*plain); !ok || p.Table != "keys" {
		t.Errorf("module %#v", mod)
	}

	d = caddyfile.NewTestDispenser("host {\n plain /x {\n tabel keys\n }\n}")
	d.Next()
	d.NextBlock(0)
	if _, _, err := Guest(d, "host", "llm.directivetest", "source", "test guest"); err == nil ||
		!strings.Contains(err.Error(), "unknown plain subdirective 'tabel'; it takes path, table") {
		t.Errorf("a misspelt field: %v", err)
	}
}
