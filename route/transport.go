package route

import (
	"net"
	"net/http"
	"time"

	"github.com/caddyserver/caddy/v2"
)

// transports holds the one upstream transport all llm_route handlers share,
// so that its idle connections survive config reloads.
var transports = caddy.NewUsagePool()

const transportKey = "llm_route:transport"

type pooledTransport struct{ *http.Transport }

// Destruct closes idle connections when the last handler lets go.
func (t pooledTransport) Destruct() error {
	t.CloseIdleConnections()
	return nil
}

func acquireTransport() *http.Transport {
	v, _, _ := transports.LoadOrNew(transportKey, func() (caddy.Destructor, error) {
		dialer := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
		return pooledTransport{&http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           dialer.DialContext,
			ForceAttemptHTTP2:     true,
			MaxIdleConns:          1024,
			MaxIdleConnsPerHost:   256,
			IdleConnTimeout:       90 * time.Second,
			TLSHandshakeTimeout:   10 * time.Second,
			ExpectContinueTimeout: time.Second,
		}}, nil
	})
	return v.(pooledTransport).Transport
}

func releaseTransport() {
	_, _ = transports.Delete(transportKey)
}
