// Package integration runs real Caddy servers with the llmoneapi modules,
// in this test process, against the fake provider, and talks to them as
// users do: with the official SDKs and plain HTTP.
package integration

import (
	"bufio"
	"encoding/json"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	_ "github.com/caddyserver/caddy/v2/modules/caddyhttp/headers"
	_ "github.com/caddyserver/caddy/v2/modules/caddyhttp/logging"
	_ "github.com/caddyserver/caddy/v2/modules/caddyhttp/requestbody"
	_ "github.com/caddyserver/caddy/v2/modules/logging"

	_ "github.com/llmoneapi/llmoneapi"
	"github.com/llmoneapi/llmoneapi/internal/fakellm"
)

// upstreamKey is the key the fake provider wants from the gateway.
const upstreamKey = "sk-upstream-secret-0123456789"

// gateway is a running Caddy with our modules in front of a fake provider.
type gateway struct {
	// URL is the gateway's base URL, e.g. http://127.0.0.1:41234.
	URL string
	// Fake is the provider behind it.
	Fake *fakellm.Server
	// statsLog is the file the llm.stats.log recorder writes to.
	statsLog string
}

// freePort returns a port nothing listens on, so that packages testing in
// parallel never fight over one.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// start runs Caddy with the site block given, after replacing {PORT} with a
// free port and {UPSTREAM} with the fake provider's base URL (ending in
// /v1). The site's llm.stats.log lines go to a file that records reads.
func start(t *testing.T, fake *fakellm.Server, site string) *gateway {
	t.Helper()
	if fake == nil {
		fake = &fakellm.Server{APIKey: upstreamKey}
	}
	upstream := httptest.NewServer(fake)
	t.Cleanup(upstream.Close)

	g := &gateway{Fake: fake, statsLog: filepath.Join(t.TempDir(), "llm.log")}
	port := freePort(t)
	g.URL = "http://127.0.0.1:" + strconv.Itoa(port)
	site = strings.NewReplacer("{PORT}", strconv.Itoa(port), "{UPSTREAM}", upstream.URL+"/v1").Replace(site)
	caddyfile := `{
	admin off
	persist_config off
	default_bind 127.0.0.1
	grace_period 1ns
	log {
		level WARN
	}
	log llmstats {
		output file ` + g.statsLog + `
		format json
		include llm.stats.log
	}
}
` + site
	adapter := caddyconfig.GetAdapter("caddyfile")
	cfg, warnings, err := adapter.Adapt([]byte(caddyfile), nil)
	if err != nil {
		t.Fatalf("adapting the Caddyfile: %v\n%s", err, caddyfile)
	}
	for _, w := range warnings {
		t.Logf("Caddyfile warning: %s", w.String())
	}
	if err := caddy.Load(cfg, true); err != nil {
		t.Fatalf("loading the config: %v", err)
	}
	t.Cleanup(func() {
		if err := caddy.Stop(); err != nil {
			t.Errorf("stopping Caddy: %v", err)
		}
	})
	return g
}

// statsLines returns the llm.stats.log lines written so far, waiting up to
// a second for at least n of them, since recorders run after the response.
func (g *gateway) statsLines(t *testing.T, n int) []map[string]any {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for {
		var lines []map[string]any
		if f, err := os.Open(g.statsLog); err == nil {
			sc := bufio.NewScanner(f)
			for sc.Scan() {
				var m map[string]any
				if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
					t.Fatalf("bad log line %q: %v", sc.Text(), err)
				}
				lines = append(lines, m)
			}
			f.Close()
		}
		if len(lines) >= n || time.Now().After(deadline) {
			if len(lines) < n {
				t.Fatalf("got %d stats log lines, want %d", len(lines), n)
			}
			return lines
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// lastStats returns the newest stats log line once there are n.
func (g *gateway) lastStats(t *testing.T, n int) map[string]any {
	lines := g.statsLines(t, n)
	return lines[len(lines)-1]
}
