package route

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/caddyserver/caddy/v2"
)

// Transport tunes the connections to an upstream. Upstreams with equal
// settings share one connection pool, kept across config reloads, so that
// idle connections and requests in flight survive a reload.
type Transport struct {
	// DialTimeout bounds connecting to the upstream. Caddyfile:
	// dial_timeout <duration>. Default 10s.
	DialTimeout caddy.Duration `json:"dial_timeout,omitempty"`
	// TLSServerName is the name checked in the upstream's certificate, when
	// it is not the URL's host. Caddyfile: tls_server_name <name>.
	TLSServerName string `json:"tls_server_name,omitempty"`
	// TLSInsecureSkipVerify turns off the check of the upstream's
	// certificate: only for tests and trusted networks. Caddyfile:
	// tls_insecure_skip_verify.
	TLSInsecureSkipVerify bool `json:"tls_insecure_skip_verify,omitempty"`
	// Proxy is the URL of an HTTP(S) proxy to reach the upstream through,
	// or "none" to ignore the HTTP_PROXY environment. Caddyfile: proxy
	// <url>|none. Default: the HTTP_PROXY/HTTPS_PROXY/NO_PROXY environment.
	Proxy string `json:"proxy,omitempty"`
	// MaxConnsPerHost bounds the connections to the upstream, idle or
	// not; calls beyond it wait for one. Caddyfile: max_conns_per_host <n>.
	// Default 0: no bound.
	MaxConnsPerHost int `json:"max_conns_per_host,omitempty"`
	// MaxIdleConnsPerHost is how many idle connections are kept for reuse.
	// Caddyfile: max_idle_conns_per_host <n>. Default 256.
	MaxIdleConnsPerHost int `json:"max_idle_conns_per_host,omitempty"`
}

// transports holds the upstream transports, keyed by their settings, so that
// handlers share them and their idle connections survive config reloads.
var transports = caddy.NewUsagePool()

type pooledTransport struct{ *http.Transport }

// Destruct closes idle connections when the last upstream lets go;
// connections in use finish their requests.
func (t pooledTransport) Destruct() error {
	t.CloseIdleConnections()
	return nil
}

func transportKey(t *Transport) string {
	if t == nil {
		t = &Transport{}
	}
	b, _ := json.Marshal(t)
	return "llm_route:transport:" + string(b)
}

func acquireTransport(t *Transport) (http.RoundTripper, error) {
	cfg := Transport{}
	if t != nil {
		cfg = *t
	}
	if cfg.DialTimeout < 0 || cfg.MaxConnsPerHost < 0 || cfg.MaxIdleConnsPerHost < 0 {
		return nil, fmt.Errorf("dial_timeout, max_conns_per_host and max_idle_conns_per_host must not be negative")
	}
	proxy := http.ProxyFromEnvironment
	switch cfg.Proxy {
	case "":
	case "none":
		proxy = nil
	default:
		u, err := url.Parse(cfg.Proxy)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("proxy '%s' is not an http:// or https:// URL, nor 'none'", cfg.Proxy)
		}
		proxy = http.ProxyURL(u)
	}
	v, _, err := transports.LoadOrNew(transportKey(t), func() (caddy.Destructor, error) {
		dial := time.Duration(cfg.DialTimeout)
		if dial == 0 {
			dial = 10 * time.Second
		}
		idle := cfg.MaxIdleConnsPerHost
		if idle == 0 {
			idle = 256
		}
		dialer := &net.Dialer{Timeout: dial, KeepAlive: 30 * time.Second}
		tr := &http.Transport{
			Proxy:                 proxy,
			DialContext:           dialer.DialContext,
			ForceAttemptHTTP2:     true,
			MaxIdleConns:          1024,
			MaxIdleConnsPerHost:   idle,
			MaxConnsPerHost:       cfg.MaxConnsPerHost,
			IdleConnTimeout:       90 * time.Second,
			TLSHandshakeTimeout:   10 * time.Second,
			ExpectContinueTimeout: time.Second,
		}
		if cfg.TLSServerName != "" || cfg.TLSInsecureSkipVerify {
			tr.TLSClientConfig = &tls.Config{
				ServerName:         cfg.TLSServerName,
				InsecureSkipVerify: cfg.TLSInsecureSkipVerify, //nolint:gosec // the operator asked for it
			}
		}
		return pooledTransport{tr}, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(pooledTransport).Transport, nil
}

func releaseTransport(t *Transport) {
	_, _ = transports.Delete(transportKey(t))
}
