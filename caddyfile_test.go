package llmoneapi_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	_ "github.com/caddyserver/caddy/v2/modules/caddyhttp/caddyauth"
	_ "github.com/caddyserver/caddy/v2/modules/caddyhttp/headers"
	_ "github.com/caddyserver/caddy/v2/modules/caddyhttp/logging"
	_ "github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
	_ "github.com/caddyserver/caddy/v2/modules/logging"

	_ "github.com/llmoneapi/llmoneapi"
)

var update = flag.Bool("update", false, "rewrite the golden JSON of testdata/caddyfile")

const separator = "\n----------\n"

// TestCaddyfileAdapt adapts each testdata/caddyfile/*.caddyfiletest (a
// Caddyfile, a line of dashes, the JSON it must become) and compares. Run
// with -update to rewrite the JSON after a deliberate change.
func TestCaddyfileAdapt(t *testing.T) {
	files, _ := filepath.Glob("testdata/caddyfile/*.caddyfiletest")
	if len(files) == 0 {
		t.Fatal("no golden files")
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			raw, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			src, want, _ := strings.Cut(string(raw), separator)
			got := adapt(t, src+"\n")
			if *update {
				if err := os.WriteFile(file, []byte(src+separator+got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			if strings.TrimSpace(got) != strings.TrimSpace(want) {
				t.Fatalf("adapted JSON differs; run go test -run TestCaddyfileAdapt -update . to accept it\ngot:\n%s", got)
			}
		})
	}
}

// TestExampleAdapts keeps Caddyfile.example valid.
func TestExampleAdapts(t *testing.T) {
	src, err := os.ReadFile("Caddyfile.example")
	if err != nil {
		t.Fatal(err)
	}
	adapt(t, string(src))
}

func adapt(t *testing.T, src string) string {
	t.Helper()
	cfg, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(src), map[string]any{"filename": "Caddyfile"})
	if err != nil {
		t.Fatalf("adapting: %v", err)
	}
	for _, w := range warnings {
		t.Errorf("warning: %s", w.String())
	}
	var out bytes.Buffer
	if err := json.Indent(&out, cfg, "", "\t"); err != nil {
		t.Fatal(err)
	}
	return out.String() + "\n"
}
