package route

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
)

// TestTransportPool: upstreams with the same transport settings share one
// connection pool; other settings get their own, with those settings.
func TestTransportPool(t *testing.T) {
	a := &Transport{DialTimeout: caddy.Duration(3 * time.Second), MaxConnsPerHost: 8, TLSServerName: "api.internal"}
	b := &Transport{DialTimeout: caddy.Duration(3 * time.Second), MaxConnsPerHost: 8, TLSServerName: "api.internal"}
	t1, err := acquireTransport(a)
	if err != nil {
		t.Fatal(err)
	}
	defer releaseTransport(a)
	t2, _ := acquireTransport(b)
	defer releaseTransport(b)
	def, _ := acquireTransport(nil)
	defer releaseTransport(nil)
	if t1 != t2 || t1 == def {
		t.Fatal("equal settings must share a pool, other settings must not")
	}
	tr := t1.(*http.Transport)
	if tr.MaxConnsPerHost != 8 || tr.TLSClientConfig.ServerName != "api.internal" || tr.MaxIdleConnsPerHost != 256 {
		t.Fatalf("transport %+v", tr)
	}
	if none, _ := acquireTransport(&Transport{Proxy: "none"}); none.(*http.Transport).Proxy != nil {
		t.Fatal("proxy none still reads the environment")
	}
	releaseTransport(&Transport{Proxy: "none"})
	for _, bad := range []*Transport{{Proxy: "socks://x"}, {Proxy: "http://"}, {MaxConnsPerHost: -1}} {
		if _, err := acquireTransport(bad); err == nil || !strings.Contains(err.Error(), "must not be negative") && !strings.Contains(err.Error(), "is not an http") {
			t.Errorf("%+v: %v", bad, err)
		}
	}
}
