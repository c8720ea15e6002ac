package llmtest

import (
	"bytes"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
)

// CaddyEnv, set to 1, makes a test binary whose TestMain calls Main (or
// does as Main does) run as Caddy itself, with every module the test
// binary holds: StartProcess starts children that way.
const CaddyEnv = "LLMONEAPI_TEST_CADDY"

// Main runs a test package's tests or, in a child started by StartProcess,
// the caddy command. Call it from TestMain:
//
//	func TestMain(m *testing.M) { llmtest.Main(m) }
//
// A package whose own tests cannot import llmtest (auth, which llmtest
// imports) checks CaddyEnv in its TestMain and calls caddycmd.Main itself.
func Main(m *testing.M) {
	if os.Getenv(CaddyEnv) == "1" {
		caddycmd.Main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// Process is a Caddy running in a child process of the test binary, for
// tests that need a second instance (a fleet): Caddy's config is
// process-wide, so one process runs one.
type Process struct {
	// URL and AdminURL are the child's gateway and admin endpoint.
	URL, AdminURL string
	// StatsLog is the file the child's llm.stats.log recorder writes to.
	StatsLog string

	cmd    *exec.Cmd
	output *syncBuffer
	done   chan struct{} // closed when the child has exited
	once   sync.Once
}

// StartProcess runs the site block in a second Caddy, in a child process
// of the test binary (whose TestMain must call Main), in front of the same
// fake provider as g. The placeholders are those of Start, with {PORT} and
// {ADMIN} the child's own and {UPSTREAM} and {TMP} shared with g. It
// returns once the child serves; the child is stopped after the test.
func (g *Gateway) StartProcess(t *testing.T, site string) *Process {
	t.Helper()
	port, admin := FreePort(t), FreePort(t)
	p := &Process{
		URL:      "http://127.0.0.1:" + strconv.Itoa(port),
		AdminURL: "http://127.0.0.1:" + strconv.Itoa(admin),
		StatsLog: filepath.Join(t.TempDir(), "llm.log"),
		output:   new(syncBuffer),
	}
	globals := strings.NewReplacer(
		"admin 127.0.0.1:"+strconv.Itoa(g.ports["ADMIN"]), "admin 127.0.0.1:"+strconv.Itoa(admin),
		g.StatsLog, p.StatsLog,
	).Replace(g.globals)
	expand := strings.NewReplacer("{PORT}", strconv.Itoa(port), "{UPSTREAM}", g.Upstream,
		"{ADMIN}", "127.0.0.1:"+strconv.Itoa(admin), "{TMP}", g.tmp)
	config := filepath.Join(t.TempDir(), "Caddyfile")
	if err := os.WriteFile(config, []byte(globals+expand.Replace(site)), 0o600); err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command(os.Args[0], "run", "--config", config, "--adapter", "caddyfile")
	p.cmd.Env = append(os.Environ(), CaddyEnv+"=1")
	p.cmd.Stdout, p.cmd.Stderr = p.output, p.output
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("starting the child Caddy: %v", err)
	}
	p.done = make(chan struct{})
	go func() {
		_ = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() { p.Stop(t) })
	deadline := time.Now().Add(20 * time.Second)
	for {
		if c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), time.Second); err == nil {
			c.Close()
			return p
		}
		select {
		case <-p.done:
			t.Fatalf("the child Caddy exited (%v) before serving:\n%s", p.cmd.ProcessState, p.output.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("the child Caddy did not serve within 20s:\n%s", p.output.String())
		}
	}
}

// Stop stops the child as Ctrl-C would and waits for it to exit, killing
// it after ten seconds.
func (p *Process) Stop(t testing.TB) {
	p.once.Do(func() {
		_ = p.cmd.Process.Signal(os.Interrupt)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			t.Errorf("the child Caddy did not stop within 10s; killing it:\n%s", p.output.String())
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	})
}

// Output returns what the child has written to stdout and stderr.
func (p *Process) Output() string { return p.output.String() }

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
