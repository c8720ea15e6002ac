package auth

import (
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/llmoneapi/llmoneapi/internal/metrics"
	"github.com/llmoneapi/llmoneapi/llm"
)

const limitsCaddyfile = `llm_auth {
	static {
		key sk-ci {
			user ci
			team ml
			rpm 60
			tpm 100000
			max_concurrent 4
			quota 5000000
			budget 20 monthly
		}
		key sk-batch {
			quota 1000 daily
			budget 0.5
		}
	}
	limits redis redis://127.0.0.1:6379/0 {
		prefix gw1:
		timeout 100ms
		batch_wait 1ms
	}
	on_store_error fail_closed
	on_store_error rate fail_open
	budget user alice 100 monthly
	budget team ml 500 weekly
	budget user * 5 daily
	default_max_tokens 1024
}`

const limitsJSON = `{
	"authenticators": [{"source": "static", "keys": [
		{"key": "sk-ci", "user": "ci", "team": "ml", "limits": {"rpm": 60, "tpm": 100000, "max_concurrent": 4,
			"quota": 5000000, "budget": 20, "budget_period": "monthly"}},
		{"key": "sk-batch", "limits": {"quota": 1000, "quota_period": "daily", "budget": 0.5}}
	]}],
	"limits": {"store": "redis", "url": "redis://127.0.0.1:6379/0", "prefix": "gw1:", "timeout": 100000000, "batch_wait": 1000000},
	"on_store_error": {"rate": "fail_open", "quota": "fail_closed", "budget": "fail_closed"},
	"budgets": [
		{"user": "alice", "budget": 100, "period": "monthly"},
		{"team": "ml", "budget": 500, "period": "weekly"},
		{"user": "*", "budget": 5, "period": "daily"}
	],
	"default_max_tokens": 1024
}`

func TestLimitsCaddyfile(t *testing.T) {
	h, err := adapt(t, limitsCaddyfile)
	if err != nil {
		t.Fatal(err)
	}
	sameJSON(t, caddyconfig.JSON(h, nil), []byte(limitsJSON))
	// The JSON loads (the redis store connects lazily).
	loaded := mustLoad(t, limitsJSON)
	id, _ := loaded.authenticate(t.Context(), "sk-ci")
	want := llm.Limits{RPM: 60, TPM: 100000, MaxConcurrent: 4, Quota: 5000000, Budget: 20, BudgetPeriod: llm.PeriodMonthly}
	if id == nil || id.Limits != want || id.Team != "ml" {
		t.Fatalf("identity %+v, want team ml and limits %+v", id, want)
	}
	// alice has her own budget; every other user the "*" one; ml's keys
	// the team's too.
	if got := loaded.sharedBudgets(&llm.Identity{User: "alice"}); len(got) != 1 || got[0].Budget != 100 {
		t.Errorf("alice's budgets: %+v", got)
	}
	if got := loaded.sharedBudgets(&llm.Identity{User: "bob", Team: "ml"}); len(got) != 2 || got[0].Budget != 5 || got[1].Budget != 500 {
		t.Errorf("bob of ml's budgets: %+v", got)
	}
}

func TestLimitsCaddyfileErrors(t *testing.T) {
	key := func(line string) string { return "llm_auth {\nstatic {\nkey k {\n" + line + "\n}\n}\n}" }
	auth := func(line string) string { return "llm_auth {\nstatic {\nkey k\n}\n" + line + "\n}" }
	for _, tc := range []struct{ src, want string }{
		{key("rpm"), "wrong argument count"},
		{key("rpm 10 daily"), "wrong argument count"},
		{key("rpm ten"), "rpm: 'ten' is not a positive whole number, at Testfile:4"},
		{key("tpm 0"), "tpm: '0' is not a positive whole number"},
		{key("max_concurrent -1"), "max_concurrent: '-1' is not a positive whole number"},
		{key("quota 100 yearly"), "quota: 'yearly' is not a period"},
		{key("quota 100 daily extra"), "wrong argument count"},
		{key("budget"), "budget takes an amount of USD"},
		{key("budget free"), "budget: 'free' is not a positive amount of USD"},
		{key("budget 10 hourly"), "budget: 'hourly' is not a period"},
		{key("team"), "wrong argument count"},
		{auth("limits"), "'limits' needs a store"},
		{auth("limits disk"), "no limits store module llm.auth.limits.disk is installed"},
		{auth("limits memory extra"), "'limits memory' takes no arguments"},
		{auth("limits memory\nlimits memory"), "'limits' may be given once"},
		{auth("limits redis"), "'limits redis' takes the server's URL"},
		{auth("limits redis redis://x {\ntimeout soon\n}"), "limits redis timeout: 'soon' is not a positive duration"},
		{auth("limits redis redis://x {\ncolour red\n}"), "unrecognized limits redis subdirective 'colour'"},
		{auth("limits redis redis://x {\nbatch_wait never\n}"), "limits redis batch_wait: 'never' is not a positive duration, nor 'off'"},
		{auth("on_store_error"), "'on_store_error' needs fail_open or fail_closed"},
		{auth("on_store_error maybe"), "on_store_error: 'maybe' is neither fail_open nor fail_closed"},
		{auth("on_store_error rpm fail_open"), "on_store_error: 'rpm' is not a kind of limit"},
		{auth("budget alice 10"), "budget takes 'user' or 'team'"},
		{auth("budget team ml"), "budget takes 'user' or 'team'"},
		{auth("budget team ml lots"), "budget: 'lots' is not a positive amount of USD"},
		{auth("default_max_tokens many"), "default_max_tokens: 'many' is not a whole number"},
	} {
		_, err := adapt(t, tc.src)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want %q", tc.src, err, tc.want)
		}
	}
}

func TestLimitsJSONErrors(t *testing.T) {
	static := `"authenticators": [{"source": "static", "keys": [{"key": "k", "limits": %s}]}]`
	for _, tc := range []struct{ config, want string }{
		{`{` + strings.Replace(static, "%s", `{"rpm": -1}`, 1) + `}`, "static key #1 (id 'key-"},
		{`{` + strings.Replace(static, "%s", `{"rpm": -1}`, 1) + `}`, "rpm must not be negative, got -1"},
		{`{` + strings.Replace(static, "%s", `{"budget": -2}`, 1) + `}`, "budget must be a non-negative amount of USD"},
		{`{` + strings.Replace(static, "%s", `{"quota": 5, "quota_period": "hourly"}`, 1) + `}`, "quota: 'hourly' is not a period"},
		{`{` + strings.Replace(static, "%s", `{}`, 1) + `, "on_store_error": {"rate": "open"}}`, "on_store_error rate: 'open' is neither fail_open nor fail_closed"},
		{`{` + strings.Replace(static, "%s", `{}`, 1) + `, "budgets": [{"budget": 1}]}`, "budget #1: set exactly one of user and team"},
		{`{` + strings.Replace(static, "%s", `{}`, 1) + `, "budgets": [{"user": "a", "team": "b", "budget": 1}]}`, "budget #1: set exactly one of user and team"},
		{`{` + strings.Replace(static, "%s", `{}`, 1) + `, "budgets": [{"user": "a", "budget": 0}]}`, "budget #1: the budget must be a positive amount"},
		{`{` + strings.Replace(static, "%s", `{}`, 1) + `, "budgets": [{"team": "a", "budget": 1}, {"team": "a", "budget": 2}]}`, "budget #2: budget #1 is already for the same team 'a' and period"},
		{`{` + strings.Replace(static, "%s", `{}`, 1) + `, "default_max_tokens": -5}`, "default_max_tokens must not be negative"},
		{`{` + strings.Replace(static, "%s", `{}`, 1) + `, "limits": {"store": "redis"}}`, "limits redis needs the server's URL"},
		{`{` + strings.Replace(static, "%s", `{}`, 1) + `, "limits": {"store": "redis", "url": "redis://127.0.0.1:6379/0", "timeout": 1000000, "batch_wait": 600000}}`,
			"limits redis: batch_wait 600µs must be under half the timeout (1ms)"},
	} {
		_, err := loadHandler(t, tc.config)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want %q", tc.config, err, tc.want)
		}
	}
}

// TestLimitsReleaseOnPanic: a handler further down that panics still frees
// the call's concurrency slot.
func TestLimitsReleaseOnPanic(t *testing.T) {
	h := mustLoad(t, `{"authenticators": [{"source": "static", "keys": [{"key": "sk-panic", "id": "panic-`+
		t.Name()+`", "limits": {"max_concurrent": 1}}]}]}`)
	boom := caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { panic("boom") })
	for i := range 3 {
		func() {
			defer func() {
				if recover() == nil {
					t.Fatal("the panic did not come through")
				}
			}()
			w := httptest.NewRecorder()
			req := caddyhttp.PrepareRequest(withKey(chat("gpt-4o"), "sk-panic"), caddy.NewReplacer(), w, &caddyhttp.Server{})
			_ = h.ServeHTTP(w, req, boom)
			t.Fatalf("call %d: ServeHTTP returned with status %d instead of panicking", i, w.Code)
		}()
	}
	if w := serve(t, h, withKey(chat("gpt-4o"), "sk-panic"), nil); w.Code != http.StatusOK {
		t.Fatalf("after three panics: status %d %s, want the slot free", w.Code, w.Body)
	}
}

func TestLimitsEstimate(t *testing.T) {
	h := &Handler{LimitSettings: LimitSettings{DefaultMaxTokens: 4096}}
	for _, tc := range []struct {
		body               string
		endpoint           llm.Endpoint
		tpm                int64
		prompt, completion int64
	}{
		{`{"model":"m","max_tokens":100}`, llm.EndpointChat, 0, 8, 100},
		{`{"model":"m","max_completion_tokens":7}`, llm.EndpointChat, 0, 10, 7},
		{`{"model":"m","max_output_tokens":300}`, llm.EndpointChat, 0, 10, 300},
		{`{"model":"m"}`, llm.EndpointChat, 0, 4, 4096},
		{`{"model":"m","max_tokens":null}`, llm.EndpointChat, 0, 8, 4096},
		{`{"model":"m","input":"some text"}`, llm.EndpointEmbeddings, 0, 9, 0},
		// Without max_tokens, a small tpm caps the reservation; with it,
		// the client's number stands (and may be refused as too large).
		{`{"model":"m"}`, llm.EndpointChat, 1000, 4, 996},
		{`{"model":"m","max_tokens":5000}`, llm.EndpointChat, 1000, 8, 5000},
	} {
		c := &llm.Call{Endpoint: tc.endpoint, Request: &llm.Request{Body: []byte(tc.body)}}
		if p, comp := h.estimate(c, tc.tpm); p != tc.prompt || comp != tc.completion {
			t.Errorf("%s: estimate %d+%d, want %d+%d", tc.body, p, comp, tc.prompt, tc.completion)
		}
	}
}

func TestLimitsPeriods(t *testing.T) {
	at := time.Date(2026, 12, 2, 15, 4, 5, 0, time.UTC) // a Wednesday
	for _, tc := range []struct {
		p          llm.Period
		start, end string
	}{
		{llm.PeriodDaily, "2026-12-02", "2026-12-03"},
		{llm.PeriodWeekly, "2026-11-30", "2026-12-07"},
		{llm.PeriodMonthly, "2026-12-01", "2027-01-01"},
	} {
		start, end := periodOf(tc.p, at)
		if start.Format(time.DateOnly) != tc.start || end.Format(time.DateOnly) != tc.end {
			t.Errorf("%s: [%v, %v), want [%s, %s)", tc.p, start, end, tc.start, tc.end)
		}
	}
	if start, end := periodOf(llm.PeriodLifetime, at); !start.IsZero() || !end.IsZero() {
		t.Errorf("lifetime: [%v, %v), want zero times", start, end)
	}
	for d, want := range map[time.Duration]string{
		time.Minute:                           "1m0s",
		6 * time.Minute:                       "6m0s",
		time.Second:                           "1s",
		1500*time.Microsecond + 1:             "2ms",
		59*time.Second + 100*time.Microsecond: "59.001s",
		0:                                     "0s",
	} {
		if got := resetString(d); got != want {
			t.Errorf("resetString(%v) = %q, want %q", d, got, want)
		}
	}
}

// BenchmarkLimitedCall is what a key with rpm and tpm (the bench/run.sh
// single and fleet keys) costs a call in llm_auth: the check at admission
// (one Take of two counters), the x-ratelimit headers, and the settlement of
// the real usage (one Give). cpu-ns/op is the process's CPU per call, so it
// includes the redis store's settlement queue, which runs in the background.
func BenchmarkLimitedCall(b *testing.B) {
	for _, store := range []string{`{"store": "memory"}`,
		`{"store": "redis", "url": "redis://127.0.0.1:6379/0", "prefix": "bench:` + strconv.FormatInt(time.Now().UnixNano(), 10) + `:"}`} {
		h := mustLoad(b, `{"authenticators": [{"source": "static", "keys": [{"key": "sk-bench", "id": "bench",
			"limits": {"rpm": 1000000000, "tpm": 1000000000000}}]}], "limits": `+store+`}`)
		b.Run(h.storeName, func(b *testing.B) {
			price := &llm.Price{Input: 1e-6, Output: 2e-6}
			body := []byte(`{"model": "m", "messages": [{"role": "user", "content": "hi"}]}`)
			next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
				c := llm.CallFrom(r)
				c.Request = &llm.Request{Body: body}
				if e := c.Admit(r, "m", price); e != nil {
					return e
				}
				c.Status, c.UsageSource = http.StatusOK, llm.UsageUpstream
				c.Usage = llm.Usage{PromptTokens: 12, CompletionTokens: 30, TotalTokens: 42}
				w.WriteHeader(http.StatusOK)
				return nil
			})
			b.ReportAllocs()
			report := cpuPerOp(b)
			for b.Loop() {
				w := httptest.NewRecorder()
				req := caddyhttp.PrepareRequest(withKey(chat("m"), "sk-bench"), caddy.NewReplacer(), w, &caddyhttp.Server{})
				if err := h.ServeHTTP(w, req, next); err != nil || w.Code != http.StatusOK {
					b.Fatalf("%v %d %s", err, w.Code, w.Body)
				}
			}
			report()
		})
	}
}

// cpuPerOp starts counting the process's CPU time for b; the function it
// returns, called after b's loop, reports it per op as cpu-ns/op. Unlike
// ns/op it counts the goroutines that work in the background.
func cpuPerOp(b *testing.B) func() {
	start, ok := metrics.ProcessCPU()
	return func() {
		if end, _ := metrics.ProcessCPU(); ok && b.N > 0 {
			b.ReportMetric(float64(end-start)/float64(b.N), "cpu-ns/op")
		}
	}
}
