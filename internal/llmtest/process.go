package llmtest

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
)

// childEnv carries the Caddyfile a child started by StartProcess runs.
const childEnv = "LLMTEST_CHILD_CADDYFILE"

// Main runs a test package's tests, with Caddy's data directory in a fresh
// temporary directory so that tests never touch the user's (an
// installation secret, say). In a child process started by StartProcess it
// is Caddy instead, with the Caddyfile it was given, until the parent
// closes the child's stdin or dies. Call it
// from TestMain:
//
//	func TestMain(m *testing.M) { llmtest.Main(m) }
func Main(m *testing.M) {
	if cf := os.Getenv(childEnv); cf != "" {
		os.Exit(runChild(cf))
	}
	dir, err := os.MkdirTemp("", "llmtest-data-")
	if err != nil {
		panic(err)
	}
	os.Setenv("XDG_DATA_HOME", dir)
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func runChild(caddyfile string) int {
	cfg, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(caddyfile), nil)
	if err != nil {
		fmt.Fprintf(os.Stderr, "llmtest child: adapting the Caddyfile: %v\n", err)
		return 2
	}
	if err := caddy.Load(cfg, true); err != nil {
		fmt.Fprintf(os.Stderr, "llmtest child: loading the config: %v\n", err)
		return 2
	}
	_, _ = io.Copy(io.Discard, os.Stdin) // until the parent lets go
	if err := caddy.Stop(); err != nil {
		fmt.Fprintf(os.Stderr, "llmtest child: stopping Caddy: %v\n", err)
		return 1
	}
	return 0
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
	stdin  io.WriteCloser
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
	p.cmd = exec.Command(os.Args[0], "-test.run=^$")
	p.cmd.Env = append(os.Environ(), childEnv+"="+globals+expand.Replace(site))
	p.cmd.Stdout, p.cmd.Stderr = p.output, p.output
	stdin, err := p.cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	p.stdin = stdin
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

// Stop stops the child and waits for it to exit, killing it after ten
// seconds.
func (p *Process) Stop(t testing.TB) {
	p.once.Do(func() {
		_ = p.stdin.Close()
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
