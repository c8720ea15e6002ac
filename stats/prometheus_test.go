package stats

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	dto "github.com/prometheus/client_model/go"

	"github.com/llmoneapi/llmoneapi/llm"
)

func newPrometheus(t testing.TB, config string) (*Prometheus, caddy.Context) {
	t.Helper()
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	mod, err := ctx.LoadModuleByID("llm.stats.prometheus", json.RawMessage(config))
	if err != nil {
		t.Fatal(err)
	}
	return mod.(*Prometheus), ctx
}

func promCall() llm.Call {
	return llm.Call{
		API: llm.APIOpenAIChat, Provider: "azure", Model: "gpt-4o-mini", ServedModel: "gpt-4o-mini",
		Identity: &llm.Identity{User: "alice", KeyID: "k1", Team: "research"}, Upstream: "a.example",
		Stream: true, Status: 200, Duration: 2 * time.Second, TTFT: 500 * time.Millisecond,
		Usage:       llm.Usage{PromptTokens: 100, CompletionTokens: 16, TotalTokens: 116},
		UsageSource: llm.UsageUpstream, Cost: 0.25,
		Attempts: []llm.Attempt{{Latency: 300 * time.Millisecond}, {Latency: 150 * time.Millisecond}},
	}
}

// TestPrometheusAcrossReload records in one config, then in the next: the
// second config's registry has every metric once, with the counts of both.
func TestPrometheusAcrossReload(t *testing.T) {
	// Labels no other test uses, so that the counts start at 0.
	first, _ := newPrometheus(t, `{"labels":["team","user"]}`)
	c := promCall()
	if err := first.Record(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	second, ctx := newPrometheus(t, `{"labels":["user","team","user"]}`)
	c.Status, c.ErrorCode, c.UsageSource = 504, "upstream_timeout", llm.UsageNone
	if err := second.Record(context.Background(), c); err != nil {
		t.Fatal(err)
	}

	reg := ctx.GetMetricsRegistry()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			if c := m.GetCounter(); c != nil && strings.HasPrefix(f.GetName(), "llmoneapi_") && f.GetName() != "llmoneapi_stats_records_total" {
				got[f.GetName()+" "+labelString(m)] = fmt.Sprintf("%g", c.GetValue())
			}
			if h := m.GetHistogram(); h != nil {
				labels := ""
				for _, l := range m.GetLabel() {
					if l.GetName() == "gen_ai_token_type" || l.GetName() == "error_type" {
						labels += l.GetName() + "=" + l.GetValue() + " "
					}
				}
				got[f.GetName()+" "+labels] = fmt.Sprintf("%.4g %d", h.GetSampleSum(), h.GetSampleCount())
			}
		}
	}
	const base = `gen_ai_operation_name=chat gen_ai_provider_name=azure.ai.openai gen_ai_request_model=gpt-4o-mini gen_ai_response_model=gpt-4o-mini `
	for name, v := range map[string]string{
		"llmoneapi_requests_total " + base + "status_class=2xx team=research user=alice": "1",
		"llmoneapi_requests_total " + base + "status_class=5xx team=research user=alice": "1",
		"llmoneapi_cost_usd_total " + base + "team=research user=alice":                  "0.5",
		"gen_ai_client_token_usage gen_ai_token_type=input ":                             "100 1",
		"gen_ai_client_token_usage gen_ai_token_type=output ":                            "16 1",
		"gen_ai_server_request_duration_seconds error_type= ":                            "2 1",
		"gen_ai_server_request_duration_seconds error_type=upstream_timeout ":            "2 1",
		"gen_ai_server_time_to_first_token_seconds ":                                     "0.5 1",
		"gen_ai_server_time_per_output_token_seconds ":                                   "0.1 1",
		"llmoneapi_gateway_overhead_seconds ":                                            "0.1 2",
	} {
		if got[name] != v {
			t.Errorf("%s= %q, want sum and count %q", name, got[name], v)
		}
	}
}

func labelString(m *dto.Metric) string {
	var parts []string
	for _, l := range m.GetLabel() {
		parts = append(parts, l.GetName()+"="+l.GetValue())
	}
	return strings.Join(parts, " ")
}

func TestPrometheusBoundedLabelsByDefault(t *testing.T) {
	p, ctx := newPrometheus(t, `{}`)
	if err := p.Record(context.Background(), promCall()); err != nil {
		t.Fatal(err)
	}
	families, err := ctx.GetMetricsRegistry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetValue() == "alice" || l.GetValue() == "k1" || l.GetValue() == "a.example" {
					t.Errorf("%s has label %s=%s without the config asking", f.GetName(), l.GetName(), l.GetValue())
				}
			}
		}
	}
}

func TestPrometheusCaddyfile(t *testing.T) {
	p := new(Prometheus)
	if err := p.UnmarshalCaddyfile(caddyfile.NewTestDispenser("prometheus {\n labels user key\n}")); err != nil {
		t.Fatal(err)
	}
	if got := string(caddyconfig.JSON(p, nil)); got != `{"labels":["user","key"]}` {
		t.Errorf("JSON = %s", got)
	}
	for input, want := range map[string]string{
		"prometheus {\n labels ip\n}": "unknown label 'ip'",
		"prometheus {\n labels\n}":    "wrong argument count",
		"prometheus x":                "wrong argument count",
		"prometheus {\n nope\n}":      "unrecognized prometheus recorder subdirective 'nope'",
	} {
		err := new(Prometheus).UnmarshalCaddyfile(caddyfile.NewTestDispenser(input))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: err = %v, want %q", input, err, want)
		}
	}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	if _, err := ctx.LoadModuleByID("llm.stats.prometheus", json.RawMessage(`{"labels":["ip"]}`)); err == nil || !strings.Contains(err.Error(), "unknown label 'ip'") {
		t.Errorf("JSON with a bad label: %v", err)
	}
}

func BenchmarkPrometheusRecord(b *testing.B) {
	p, _ := newPrometheus(b, `{}`)
	c := promCall()
	b.ReportAllocs()
	for b.Loop() {
		_ = p.Record(context.Background(), c)
	}
}

// TestPrometheusSeriesOnFirstUse: the series a recorder keeps at hand count
// every record, and a series appears only once something was observed in
// it, as with WithLabelValues.
func TestPrometheusSeriesOnFirstUse(t *testing.T) {
	p, ctx := newPrometheus(t, `{"labels":["key"]}`)
	c := promCall()
	c.Identity = &llm.Identity{KeyID: t.Name()} // series of this test's own
	c.Usage.CompletionTokens = 1                // no time per output token
	for range 3 {
		if err := p.Record(context.Background(), c); err != nil {
			t.Fatal(err)
		}
	}
	families, err := ctx.GetMetricsRegistry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			if !strings.Contains(labelString(m), "key_id="+t.Name()) {
				continue
			}
			switch {
			case m.GetHistogram() != nil:
				got[f.GetName()] += float64(m.GetHistogram().GetSampleCount())
			case m.GetCounter() != nil:
				got[f.GetName()] += m.GetCounter().GetValue()
			}
		}
	}
	want := map[string]float64{
		"llmoneapi_requests_total": 3, "llmoneapi_cost_usd_total": 0.75,
		"gen_ai_client_token_usage": 6, "gen_ai_server_request_duration_seconds": 3,
		"gen_ai_server_time_to_first_token_seconds": 3, "llmoneapi_gateway_overhead_seconds": 3,
	}
	if !maps.Equal(got, want) {
		t.Errorf("series %v\nwant %v", got, want)
	}
}
