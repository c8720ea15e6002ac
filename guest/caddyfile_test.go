package guest_test

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/llmoneapi/llmoneapi/guest"
)

type common struct {
	Timeout caddy.Duration `json:"timeout,omitempty"`
}

type config struct {
	common
	Path    string        `json:"path" caddyfile:"arg"`
	Tags    []string      `json:"tags,omitempty" caddyfile:"arg"`
	Table   string        `json:"table,omitempty"`
	Verbose bool          `json:"verbose,omitempty"`
	Limit   int           `json:"limit,omitempty"`
	Size    uint16        `json:"size,omitempty"`
	Ratio   float64       `json:"ratio,omitempty"`
	Every   time.Duration `json:"every,omitempty"`
	Hosts   []string      `json:"hosts,omitempty"`
	Hidden  string        `json:"-"`
	private string        // unexported: never set
}

func parse(t *testing.T, src string) (config, error) {
	t.Helper()
	var c config
	err := guest.UnmarshalCaddyfile(caddyfile.NewTestDispenser(src), &c)
	return c, err
}

func TestUnmarshalCaddyfile(t *testing.T) {
	got, err := parse(t, `mod /var/db.sqlite a b {
		table keys
		verbose
		limit -3
		size 512
		ratio 0.25
		every 1m30s
		timeout 2d
		hosts h1 h2
		hosts h3
	}`)
	if err != nil {
		t.Fatal(err)
	}
	_ = got.private
	want := config{
		common: common{Timeout: caddy.Duration(48 * time.Hour)},
		Path:   "/var/db.sqlite", Tags: []string{"a", "b"}, Table: "keys", Verbose: true, Limit: -3,
		Size: 512, Ratio: 0.25, Every: 90 * time.Second, Hosts: []string{"h1", "h2", "h3"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}

	// Arguments are optional, a block alone works, placeholders are kept.
	got, err = parse(t, "mod {\n path {env.DB}\n verbose false\n}")
	if err != nil || got.Path != "{env.DB}" || got.Verbose || got.Tags != nil {
		t.Fatalf("block only: %+v, %v", got, err)
	}
	if got, err = parse(t, "mod"); err != nil || !reflect.DeepEqual(got, config{}) {
		t.Fatalf("bare name: %+v, %v", got, err)
	}
}

func TestUnmarshalCaddyfileErrors(t *testing.T) {
	for _, tc := range []struct{ src, want string }{
		{"mod {\n nope 1\n}", "unknown mod subdirective 'nope'; it takes every, hosts, limit, path, ratio, size, table, tags, timeout, verbose, at Testfile:2"},
		{"mod {\n Hidden x\n}", "unknown mod subdirective 'Hidden'"},
		{"mod {\n private x\n}", "unknown mod subdirective 'private'"},
		{"mod {\n limit many\n}", "mod: limit: 'many' is not a whole number"},
		{"mod {\n size -1\n}", "mod: size: '-1' is not a whole number of 0 or more"},
		{"mod {\n ratio x\n}", "mod: ratio: 'x' is not a number"},
		{"mod {\n verbose maybe\n}", "mod: verbose: 'maybe' is not true or false"},
		{"mod {\n every soon\n}", "mod: every: 'soon' is not a duration"},
		{"mod {\n table a b\n}", "mod: 'table' takes one value, got 2"},
		{"mod {\n table\n}", "mod: 'table' takes one value, got 0"},
		{"mod {\n hosts\n}", "mod: 'hosts' needs at least one value"},
		{"mod /x {\n path /y\n}", "mod: 'path' is given twice"},
		{"mod {\n table a {\n x\n }\n}", "mod: 'table' takes no block"},
	} {
		_, err := parse(t, tc.src)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: got %v, want %q", tc.src, err, tc.want)
		}
	}

	var one struct {
		URL string `json:"url" caddyfile:"arg"`
	}
	err := guest.UnmarshalCaddyfile(caddyfile.NewTestDispenser("mod a b"), &one)
	if err == nil || !strings.Contains(err.Error(), "mod takes the arguments [<url>], not 'b'") {
		t.Errorf("too many arguments: %v", err)
	}
	var none struct{}
	err = guest.UnmarshalCaddyfile(caddyfile.NewTestDispenser("mod a"), &none)
	if err == nil || !strings.Contains(err.Error(), "mod takes no arguments, not 'a'") {
		t.Errorf("no arguments: %v", err)
	}
	var m map[string]int
	err = guest.UnmarshalCaddyfile(caddyfile.NewTestDispenser("mod"), &struct {
		M map[string]int `json:"m"`
	}{M: m})
	if err != nil {
		t.Errorf("an unset map field: %v", err)
	}
	err = guest.UnmarshalCaddyfile(caddyfile.NewTestDispenser("mod {\n m x\n}"), &struct {
		M map[string]int `json:"m"`
	}{})
	if err == nil || !strings.Contains(err.Error(), "cannot be set in the Caddyfile") {
		t.Errorf("a map field: %v", err)
	}
	if err := guest.UnmarshalCaddyfile(caddyfile.NewTestDispenser("mod"), config{}); err == nil {
		t.Error("a struct value accepted")
	}
}
