// Package llmtest starts real Caddy servers with the llmoneapi modules in a
// test process, in front of the fake provider, for the end-to-end tests of
// every package. Caddy's config is process-wide, so one test package runs
// one gateway at a time; packages run in parallel on free ports.
package llmtest

import (
	"bufio"
	"encoding/json"
	"io"
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
	_ "github.com/caddyserver/caddy/v2/modules/metrics" // the admin endpoint's /metrics

	_ "github.com/llmoneapi/llmoneapi" // every module and directive
	"github.com/llmoneapi/llmoneapi/internal/fakellm"
)

// UpstreamKey is the key the fake provider wants from the gateway.
const UpstreamKey = "sk-upstream-secret-0123456789"

// Redis and Postgres are the stores every machine of the project runs.
const (
	RedisURL    = "redis://127.0.0.1:6379/0"
	PostgresDSN = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
)

// Gateway is a running Caddy with our modules in front of a fake provider.
type Gateway struct {
	// URL is the gateway's base URL, e.g. http://127.0.0.1:41234.
	URL string
	// AdminURL is Caddy's admin endpoint, e.g. http://127.0.0.1:41235.
	AdminURL string
	// Fake is the provider behind it, and Upstream its base URL (ending
	// in /v1).
	Fake     *fakellm.Server
	Upstream string
	// StatsLog is the file the llm.stats.log recorder writes to.
	StatsLog string

	t       *testing.T
	ports   map[string]int
	globals string
	tmp     string
	expand  *strings.Replacer
}

// FreePort returns a port nothing listens on, so that packages testing in
// parallel never fight over one.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Start runs Caddy with the site block given, in front of fake (a new one
// wanting UpstreamKey when nil). In the site, {PORT} is the gateway's port,
// {UPSTREAM} the fake provider's base URL and {ADMIN} the admin address;
// {TMP} is a directory removed after the test. The site's llm.stats.log
// lines go to StatsLog.
func Start(t *testing.T, fake *fakellm.Server, site string) *Gateway {
	t.Helper()
	if fake == nil {
		fake = &fakellm.Server{APIKey: UpstreamKey}
	}
	upstream := httptest.NewServer(fake)
	t.Cleanup(upstream.Close)
	g := &Gateway{
		Fake:     fake,
		Upstream: upstream.URL + "/v1",
		StatsLog: filepath.Join(t.TempDir(), "llm.log"),
		t:        t,
		ports:    map[string]int{"PORT": FreePort(t), "ADMIN": FreePort(t)},
	}
	g.URL = "http://127.0.0.1:" + strconv.Itoa(g.ports["PORT"])
	g.AdminURL = "http://127.0.0.1:" + strconv.Itoa(g.ports["ADMIN"])
	tmp := t.TempDir()
	g.tmp = tmp
	g.globals = `{
	admin 127.0.0.1:` + strconv.Itoa(g.ports["ADMIN"]) + `
	persist_config off
	default_bind 127.0.0.1
	# Long enough that a reload (Load) never cuts a connection the old
	# servers just accepted; Stop still returns as soon as calls are done.
	grace_period 3s
	log {
		level WARN
	}
	log llmstats {
		output file ` + g.StatsLog + `
		format json
		include llm.stats.log
	}
}
`
	g.expand = strings.NewReplacer("{PORT}", strconv.Itoa(g.ports["PORT"]), "{UPSTREAM}", g.Upstream,
		"{ADMIN}", "127.0.0.1:"+strconv.Itoa(g.ports["ADMIN"]), "{TMP}", tmp)
	g.Load(site)
	t.Cleanup(func() {
		if err := caddy.Stop(); err != nil {
			t.Errorf("stopping Caddy: %v", err)
		}
	})
	return g
}

// Load replaces the running config with the site block given (a config
// reload, as `caddy reload` does), with the same placeholders as Start.
func (g *Gateway) Load(site string) {
	g.t.Helper()
	caddyfile := g.globals + g.expand.Replace(site)
	adapter := caddyconfig.GetAdapter("caddyfile")
	cfg, warnings, err := adapter.Adapt([]byte(caddyfile), nil)
	if err != nil {
		g.t.Fatalf("adapting the Caddyfile: %v\n%s", err, caddyfile)
	}
	for _, w := range warnings {
		g.t.Logf("Caddyfile warning: %s", w.String())
	}
	if err := caddy.Load(cfg, true); err != nil {
		g.t.Fatalf("loading the config: %v", err)
	}
	g.waitServing()
}

// waitServing returns once the gateway's port answers. Right after a
// reload, a connection can still land on the old servers as they shut down
// and be closed unanswered; a test's first call must not be that one. The
// probe lacks a Host header, so Go's server answers it 400 before any
// handler runs, and no recorder sees it.
func (g *Gateway) waitServing() {
	addr := strings.TrimPrefix(g.URL, "http://")
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			continue
		}
		_ = conn.SetDeadline(time.Now().Add(time.Second))
		_, err = conn.Write([]byte("GET / HTTP/1.1\r\n\r\n"))
		var b [12]byte
		n, rerr := io.ReadFull(conn, b[:])
		conn.Close()
		if err == nil && rerr == nil && n == len(b) && strings.HasPrefix(string(b[:]), "HTTP/1.1 ") {
			return
		}
	}
}

// StatsLines returns the llm.stats.log lines written so far, waiting up to
// ten seconds for at least n of them, since recorders run after the
// response. A call counted with the tokenizer is logged after it loads,
// which under -race, the first time in a test process, takes over two
// seconds.
func (g *Gateway) StatsLines(t testing.TB, n int) []map[string]any {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var lines []map[string]any
		if f, err := os.Open(g.StatsLog); err == nil {
			sc := bufio.NewScanner(f)
			sc.Buffer(nil, 1<<20)
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

// LastStats returns the newest stats log line once there are n.
func (g *Gateway) LastStats(t testing.TB, n int) map[string]any {
	lines := g.StatsLines(t, n)
	return lines[len(lines)-1]
}
