// Package metrics registers the modules' Prometheus collectors in Caddy's
// registry. The collectors are package-level values, made once per process,
// so that counters keep counting across config reloads; each config's
// registry gets the same ones.
package metrics

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Register registers each collector in reg. A collector reg already holds
// is fine: several handlers of one config, or a reload, register the same
// collectors again.
func Register(reg prometheus.Registerer, collectors ...prometheus.Collector) error {
	for _, c := range collectors {
		var are prometheus.AlreadyRegisteredError
		if err := reg.Register(c); err != nil && !errors.As(err, &are) {
			return err
		}
	}
	return nil
}
