package route

import (
	"context"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"go.uber.org/zap"
)

// probeTimeout bounds one active health check.
const probeTimeout = 10 * time.Second

// prober runs the active health checks of one handler's models until the
// handler is cleaned up.
type prober struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// startProber probes, every model's health_interval, each upstream of the
// models that turned active checks on; nil when none did.
func startProber(logger *zap.Logger, models []*Model) *prober {
	var active []*Model
	for _, m := range models {
		if m.probeEvery > 0 {
			active = append(active, m)
		}
	}
	if len(active) == 0 {
		return nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &prober{cancel: cancel}
	for _, m := range active {
		for _, u := range m.Upstreams {
			p.wg.Add(1)
			go func() {
				defer p.wg.Done()
				tick := time.NewTicker(m.probeEvery)
				defer tick.Stop()
				for {
					select {
					case <-ctx.Done():
						return
					case <-tick.C:
						probe(ctx, logger, u, m.HealthURI)
					}
				}
			}()
		}
	}
	return p
}

func (p *prober) stop() {
	if p == nil {
		return
	}
	p.cancel()
	p.wg.Wait()
}

// probe asks u whether it is up: a 2xx brings it back from failures or a
// refused key; anything else is noted as its last error, and traffic alone
// decides whether it is out.
func probe(ctx context.Context, logger *zap.Logger, u *Upstream, uri string) {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	var req *http.Request
	var err error
	if pr, ok := u.provider.(Prober); ok {
		req, err = pr.ProbeRequest(ctx, u, uri)
	} else {
		req, err = http.NewRequestWithContext(ctx, http.MethodGet, u.base+uri, nil)
		if err == nil {
			for name, values := range u.header {
				req.Header[name] = slices.Clone(values)
			}
			if u.key != "" {
				req.Header.Set("Authorization", "Bearer "+u.key)
			}
		}
	}
	if err != nil {
		u.state.probeFailed("health check request: "+err.Error(), time.Now())
		return
	}
	resp, err := u.client.RoundTrip(req)
	if err != nil {
		if ctx.Err() == nil || ctx.Err() == context.DeadlineExceeded {
			u.state.probeFailed("health check: no answer", time.Now())
		}
		return
	}
	resp.Body.Close()
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		u.state.recover()
		return
	}
	u.state.probeFailed("health check: status "+strconv.Itoa(resp.StatusCode), time.Now())
	logger.Debug("upstream health check failed", zap.String("upstream", u.id), zap.Int("status", resp.StatusCode))
}
