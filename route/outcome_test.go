package route

import (
	"net/http"
	"testing"
	"time"
)

func TestClassifyStatus(t *testing.T) {
	tests := []struct {
		status  int
		want    Outcome
		retried bool
	}{
		{200, OutcomeOK, false},
		{400, OutcomeClientError, false},
		{404, OutcomeClientError, false},
		{413, OutcomeClientError, false},
		{422, OutcomeClientError, false},
		{401, OutcomeAuthRefused, true},
		{402, OutcomeAuthRefused, true},
		{403, OutcomeAuthRefused, true},
		{407, OutcomeAuthRefused, true},
		{408, OutcomeTimeout, true},
		{429, OutcomeRateLimited, true},
		{500, OutcomeServerError, true},
		{502, OutcomeServerError, true},
		{503, OutcomeServerError, true},
		{504, OutcomeServerError, true},
		{529, OutcomeServerError, true},
	}
	for _, tt := range tests {
		got := classifyStatus(tt.status)
		if got != tt.want || got.retry() != tt.retried {
			t.Errorf("%d: %s (retried %v), want %s (retried %v)", tt.status, got, got.retry(), tt.want, tt.retried)
		}
	}
	for _, o := range []Outcome{OutcomeConnectError, OutcomeStreamBroken, OutcomeBadResponse, OutcomeTimeout} {
		if !o.retry() || !o.upstreamFault() {
			t.Errorf("%s must be retried and count against the upstream", o)
		}
	}
	for _, o := range []Outcome{OutcomeClientGone, OutcomeCallTimeout, OutcomeClientError, OutcomeTruncated} {
		if o.retry() {
			t.Errorf("%s must not be retried", o)
		}
	}
	if OutcomeClientGone.upstreamFault() || OutcomeRequestFailed.upstreamFault() || !OutcomeTruncated.upstreamFault() {
		t.Error("fault attribution")
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		header http.Header
		want   time.Duration
	}{
		{http.Header{}, 0},
		{http.Header{"Retry-After": {"7"}}, 7 * time.Second},
		{http.Header{"Retry-After": {"1.5"}}, 1500 * time.Millisecond},
		{http.Header{"Retry-After": {now.Add(90 * time.Second).Format(http.TimeFormat)}}, 90 * time.Second},
		{http.Header{"Retry-After": {"soon"}}, 0},
		{http.Header{"Retry-After": {"-3"}}, 0},
		{http.Header{"Retry-After-Ms": {"250"}, "Retry-After": {"7"}}, 250 * time.Millisecond},
		{http.Header{"X-Ratelimit-Reset-Requests": {"1s"}, "X-Ratelimit-Reset-Tokens": {"6m0s"}}, 6 * time.Minute},
		{http.Header{"X-Ratelimit-Reset-Requests": {"20ms"}, "X-Ratelimit-Remaining-Requests": {"0"},
			"X-Ratelimit-Reset-Tokens": {"6m0s"}, "X-Ratelimit-Remaining-Tokens": {"100"}}, 20 * time.Millisecond},
		{http.Header{"Retry-After": {"86400"}}, maxCooldown},
	}
	for _, tt := range tests {
		if got := retryAfter(tt.header, now); got != tt.want {
			t.Errorf("%v: %v, want %v", tt.header, got, tt.want)
		}
	}
}

// FuzzRetryAfter: no header value makes the parser panic or ask for a
// negative or unbounded rest.
func FuzzRetryAfter(f *testing.F) {
	for _, s := range []string{"7", "1.5", "Wed, 21 Oct 2015 07:28:00 GMT", "6m0s", "1e400", "-1", "NaN", ""} {
		f.Add(s, s)
	}
	f.Fuzz(func(t *testing.T, retry, reset string) {
		h := http.Header{"Retry-After": {retry}, "Retry-After-Ms": {retry}, "X-Ratelimit-Reset-Tokens": {reset}}
		if d := retryAfter(h, time.Now()); d < 0 || d > maxCooldown {
			t.Fatalf("%q %q: %v", retry, reset, d)
		}
	})
}
