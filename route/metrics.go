package route

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// upstreamCollector exports each upstream's health as Prometheus gauges,
// read from the same state as GET /llm/upstreams when the registry is
// scraped. The label values come from the config (model names and upstream
// ids, which hold no key), so their number is bounded.
type upstreamCollector struct{}

var (
	upstreamHealthyDesc = prometheus.NewDesc("llmoneapi_upstream_healthy",
		"Whether the upstream takes calls now (1) or is out after failures, a rate limit or refused credentials (0).",
		[]string{"model", "upstream"}, nil)
	upstreamInFlightDesc = prometheus.NewDesc("llmoneapi_upstream_in_flight",
		"Calls in flight to the upstream.", []string{"model", "upstream"}, nil)
	upstreamFailuresDesc = prometheus.NewDesc("llmoneapi_upstream_failures_total",
		"Failed tries at the upstream since it was first configured.", []string{"model", "upstream"}, nil)
)

func (upstreamCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- upstreamHealthyDesc
	ch <- upstreamInFlightDesc
	ch <- upstreamFailuresDesc
}

func (upstreamCollector) Collect(ch chan<- prometheus.Metric) {
	for _, m := range snapshot(time.Now()).Models {
		for _, u := range m.Upstreams {
			healthy := 0.0
			if u.Healthy {
				healthy = 1
			}
			ch <- prometheus.MustNewConstMetric(upstreamHealthyDesc, prometheus.GaugeValue, healthy, m.Model, u.ID)
			ch <- prometheus.MustNewConstMetric(upstreamInFlightDesc, prometheus.GaugeValue, float64(u.InFlight), m.Model, u.ID)
			ch <- prometheus.MustNewConstMetric(upstreamFailuresDesc, prometheus.CounterValue, float64(u.Failures), m.Model, u.ID)
		}
	}
}
