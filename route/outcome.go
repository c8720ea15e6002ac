package route

import (
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Outcome classifies how one try at an upstream ended. It decides whether
// the call moves on to another upstream, what the try does to the
// upstream's health, and what the client gets if it was the last try. The
// README's retry table lists them.
type Outcome string

// The outcomes of a try.
const (
	// OutcomeOK: the upstream answered (for a stream: its first content
	// event came).
	OutcomeOK Outcome = "ok"
	// OutcomeConnectError: the upstream could not be reached, or the
	// connection broke before the answer's first byte.
	OutcomeConnectError Outcome = "connect_error"
	// OutcomeTimeout: no first byte within first_byte_timeout, or a 408.
	OutcomeTimeout Outcome = "timeout"
	// OutcomeRateLimited: a 429.
	OutcomeRateLimited Outcome = "rate_limited"
	// OutcomeServerError: a 5xx.
	OutcomeServerError Outcome = "server_error"
	// OutcomeAuthRefused: the upstream refused the gateway's key or
	// account (401, 402, 403, 407).
	OutcomeAuthRefused Outcome = "auth_refused"
	// OutcomeClientError: any other 4xx (400, 404, 413, 422, ...): the
	// client's own mistake, answered as it is.
	OutcomeClientError Outcome = "client_error"
	// OutcomeStreamBroken: a stream that broke off before its first content
	// event.
	OutcomeStreamBroken Outcome = "stream_broken"
	// OutcomeBadResponse: an answer the provider could not read.
	OutcomeBadResponse Outcome = "bad_response"
	// OutcomeRequestFailed: the provider could not build the request (an
	// endpoint it does not serve).
	OutcomeRequestFailed Outcome = "request_failed"
	// OutcomeCallTimeout: the call's own timeout ran out.
	OutcomeCallTimeout Outcome = "call_timeout"
	// OutcomeClientGone: the client went away.
	OutcomeClientGone Outcome = "client_gone"
	// OutcomeTruncated: a stream the client had started to get broke off
	// (its record's error_code says why).
	OutcomeTruncated Outcome = "truncated"
	// OutcomeUnhealthy is the cool-down reason of an upstream out after
	// max_fails failures; never a try's outcome.
	OutcomeUnhealthy Outcome = "unhealthy"
)

// classifyStatus is the outcome of an upstream's HTTP status.
func classifyStatus(status int) Outcome {
	switch {
	case status < 400:
		return OutcomeOK
	case status == http.StatusTooManyRequests:
		return OutcomeRateLimited
	case status == http.StatusUnauthorized, status == http.StatusPaymentRequired,
		status == http.StatusForbidden, status == http.StatusProxyAuthRequired:
		return OutcomeAuthRefused
	case status == http.StatusRequestTimeout:
		return OutcomeTimeout
	case status >= 500:
		return OutcomeServerError
	}
	return OutcomeClientError
}

// retry reports whether a call that ended so moves on to another upstream.
func (o Outcome) retry() bool {
	switch o {
	case OutcomeConnectError, OutcomeTimeout, OutcomeRateLimited, OutcomeServerError,
		OutcomeAuthRefused, OutcomeStreamBroken, OutcomeBadResponse, OutcomeRequestFailed:
		return true
	}
	return false
}

// upstreamFault reports whether the outcome counts against the upstream's
// health.
func (o Outcome) upstreamFault() bool {
	switch o {
	case OutcomeConnectError, OutcomeTimeout, OutcomeRateLimited, OutcomeServerError,
		OutcomeAuthRefused, OutcomeStreamBroken, OutcomeBadResponse, OutcomeTruncated:
		return true
	}
	return false
}

// describe is the outcome as the admin API shows an upstream's last error:
// the gateway's words only, since an upstream's message may echo its key.
func (o Outcome) describe(status int) string {
	if status > 0 {
		return string(o) + " (status " + strconv.Itoa(status) + ")"
	}
	return string(o)
}

// retryAfter reads how long a rate-limited upstream asks to be left alone,
// from retry-after-ms, Retry-After (seconds or an HTTP date) or OpenAI's
// x-ratelimit-reset-requests / -tokens ("1s", "6m0s", "20ms"); for the
// latter, the bucket that ran out counts, else the later reset. It returns
// 0 when the response says nothing.
func retryAfter(h http.Header, now time.Time) time.Duration {
	if ms, err := strconv.ParseFloat(h.Get("Retry-After-Ms"), 64); err == nil && ms > 0 && !math.IsInf(ms, 0) {
		return capCooldown(time.Duration(ms * float64(time.Millisecond)))
	}
	if v := strings.TrimSpace(h.Get("Retry-After")); v != "" {
		if s, err := strconv.ParseFloat(v, 64); err == nil && s > 0 && !math.IsInf(s, 0) {
			return capCooldown(time.Duration(s * float64(time.Second)))
		}
		if t, err := http.ParseTime(v); err == nil && t.After(now) {
			return capCooldown(t.Sub(now))
		}
	}
	var longest time.Duration
	for _, bucket := range []string{"requests", "tokens"} {
		d, err := time.ParseDuration(strings.TrimSpace(h.Get("X-Ratelimit-Reset-" + bucket)))
		if err != nil || d <= 0 {
			continue
		}
		if h.Get("X-Ratelimit-Remaining-"+bucket) == "0" {
			return capCooldown(d)
		}
		longest = max(longest, d)
	}
	return capCooldown(longest)
}

func capCooldown(d time.Duration) time.Duration { return min(d, maxCooldown) }
