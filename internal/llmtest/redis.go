package llmtest

import (
	"bufio"
	"context"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Redis is a redis-server of the test's own on a free port, without
// persistence, for tests that stop and restart Redis: the machine's shared
// Redis (RedisURL) serves other packages' tests at the same time.
type Redis struct {
	// URL is the server's URL, the same across restarts.
	URL string

	t    *testing.T
	port int
	cmd  *exec.Cmd
	done chan struct{}
}

// StartRedis starts a redis-server (from PATH) and stops it after the test.
func StartRedis(t *testing.T) *Redis {
	t.Helper()
	r := &Redis{t: t, port: FreePort(t)}
	r.URL = "redis://127.0.0.1:" + strconv.Itoa(r.port) + "/0"
	r.Start()
	t.Cleanup(r.Stop)
	return r
}

// Start starts the server again after Stop, on the same port, empty.
func (r *Redis) Start() {
	r.t.Helper()
	if r.cmd != nil {
		r.t.Fatal("llmtest.Redis: Start while it runs")
	}
	r.cmd = exec.Command("redis-server", "--port", strconv.Itoa(r.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no")
	if err := r.cmd.Start(); err != nil {
		r.t.Fatalf("starting redis-server: %v", err)
	}
	r.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) {
		_ = cmd.Wait()
		close(done)
	}(r.cmd, r.done)
	deadline := time.Now().Add(10 * time.Second)
	for !r.ping() {
		if time.Now().After(deadline) {
			r.t.Fatalf("redis-server on port %d did not answer within 10s", r.port)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Stop kills the server, as a crash or a network cut would, and waits
// until it is gone.
func (r *Redis) Stop() {
	if r.cmd == nil {
		return
	}
	_ = r.cmd.Process.Kill()
	<-r.done
	r.cmd = nil
}

func (r *Redis) ping() bool {
	c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(r.port), time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return false
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return err == nil && strings.HasPrefix(line, "+PONG")
}

// ClearRedis deletes the keys under prefix from the Redis at url, for a
// test's cleanup.
func ClearRedis(t testing.TB, url, prefix string) {
	t.Helper()
	opts, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	c := redis.NewClient(opts)
	defer c.Close()
	ctx := context.Background()
	iter := c.Scan(ctx, 0, prefix+"*", 1000).Iterator()
	for iter.Next(ctx) {
		c.Del(ctx, iter.Val())
	}
	if err := iter.Err(); err != nil {
		t.Errorf("clearing %s* from Redis: %v", prefix, err)
	}
}
