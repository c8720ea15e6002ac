package route

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/llmoneapi/llmoneapi/llm"
)

const (
	// maxErrorBody bounds how much of an upstream error body is read.
	maxErrorBody = 1 << 20
	// maxResponseBody bounds an unstreamed upstream answer the gateway
	// holds whole; holdMax is as much as it holds of one it passes through
	// unchanged (see Relayer) before relaying the rest as it comes.
	maxResponseBody = 64 << 20
	holdMax         = 1 << 20
	// tailMax is how much of a relayed answer's end is kept for its usage.
	tailMax = 64 << 10
	// maxHeld bounds the events held back before a stream's first content
	// event (stream_commit first_content); past it the stream is committed
	// anyway.
	maxHeld = 1 << 20
	// statusClientClosed is the status recorded when the client goes away
	// before it gets an answer (nginx's and Caddy's 499).
	statusClientClosed = 499
)

// The causes a try's context is cancelled with, which tell a timeout from
// a broken connection.
var (
	errFirstByte   = errors.New("first_byte_timeout")
	errStreamIdle  = errors.New("stream_idle_timeout")
	errCallTimeout = errors.New("timeout")
)

// try is one attempt of a call at one upstream: the request built, sent, and
// waited on up to the answer's first byte (a stream's commit event, see
// Model.StreamCommit). Nothing of it has reached
// the client yet.
type try struct {
	model    *Model
	up       *Upstream
	x        *Exchange // &exchange: one allocation for both
	exchange Exchange
	outcome  Outcome
	status   int
	cooldown time.Duration // for rate_limited and auth_refused
	cause    error         // why it failed, for the log only
	begin    time.Time
	latency  time.Duration
	timeout  time.Duration // the first-byte timeout it had
	ctx      context.Context
	cancel   context.CancelCauseFunc

	// clientErr is the answer for a client_error.
	clientErr *llm.Error
	// A successful try holds the answer: an unstreamed body, or a stream
	// with the events read up to the one it is committed at.
	body   []byte
	header http.Header // headers of an answer the provider gave itself
	usage  *llm.Usage
	resp   *http.Response
	stream Stream
	held   [][]byte
	// more says the event after the held ones is at hand already.
	more bool
	eof  bool
	idle *idleReader
	// sent is what a relayed stream sent, for counting usage the
	// upstream did not report.
	sent sent
	// large is the provider of an unstreamed answer too large to hold:
	// body holds its start, resp the rest.
	large Relayer
}

// chain returns the models a call may be served by: the model asked for,
// then those of its fallbacks that exist and the client's key may use.
func (h *Handler) chain(call *llm.Call, m *Model) []*Model {
	models := []*Model{m}
	for _, name := range m.Fallbacks {
		if call.Identity.CheckModel(name) != nil {
			continue
		}
		if fm := h.model(name); fm != nil {
			models = append(models, fm)
		}
	}
	return models
}

// serveCall forwards the call: it tries upstreams of the model, then of its
// fallbacks, until one answers, records every try, and answers the client
// with the answer or with the last try's failure.
func (h *Handler) serveCall(w http.ResponseWriter, r *http.Request, call *llm.Call, endpoint llm.Endpoint, req *llm.Request, m *Model) {
	clock := newCallClock(m.timeout)
	defer clock.stop()
	models := h.chain(call, m)
	var last *try
	tried := make([]*Upstream, 0, 4)
loop:
	for _, mm := range models {
		began := time.Now()
		tried = tried[:0]
		for n := 0; n <= mm.retries; n++ {
			if r.Context().Err() != nil || clock.expired() || (n > 0 && mm.TryDuration > 0 && time.Since(began) >= time.Duration(mm.TryDuration)) {
				break
			}
			u := mm.next(r, tried, n == 0)
			if u == nil {
				break
			}
			tried = append(tried, u)
			t := h.try(r.Context(), clock, mm, u, endpoint, req, r.Header)
			call.Attempts = append(call.Attempts, llm.Attempt{
				Model: mm.Name, Provider: u.providerName, Upstream: u.host, UpstreamID: u.id,
				Status: t.status, Outcome: string(t.outcome), Latency: t.latency,
			})
			call.UpstreamModel, call.Provider, call.Upstream = u.upstreamName, u.providerName, u.host
			if t.outcome == OutcomeOK {
				h.relay(w, r, call, t)
				return
			}
			h.logTry(call, t)
			last = t
			if !t.outcome.retry() {
				break loop
			}
		}
	}
	outcome := OutcomeRateLimited // no try at all: every upstream is resting
	if last != nil {
		outcome = last.outcome
	}
	switch {
	case r.Context().Err() != nil:
		outcome = OutcomeClientGone
	case clock.expired():
		outcome = OutcomeCallTimeout
	}
	h.answerFailure(w, r, call, m, models, last, outcome)
}

// callClock times a call out: once m.timeout has passed, the try under way
// is cancelled with errCallTimeout, and no other is made. A timer of the
// call's own, rather than a context with a deadline between the request's
// and each try's: one context layer less for every call.
type callClock struct {
	deadline time.Time
	timer    *time.Timer
	cur      atomic.Pointer[try]
}

func newCallClock(d time.Duration) *callClock {
	c := &callClock{deadline: time.Now().Add(d)}
	c.timer = time.AfterFunc(d, func() {
		if t := c.cur.Load(); t != nil {
			t.cancel(errCallTimeout)
		}
	})
	return c
}

// watch makes t the try the timeout cancels, and cancels it at once if
// the call has already timed out.
func (c *callClock) watch(t *try) {
	c.cur.Store(t)
	if c.expired() {
		t.cancel(errCallTimeout)
	}
}

func (c *callClock) expired() bool { return !time.Now().Before(c.deadline) }

func (c *callClock) stop() { c.timer.Stop() }

// next returns the upstream for the model's next try, or nil when none is
// left: a policy's pick among the available upstreams not yet tried, or,
// for the model's first try when every upstream is out after failures,
// the one that failed longest ago (rather than failing at once).
// Upstreams cooling down after a 429 are not tried: they asked for the rest.
func (m *Model) next(r *http.Request, tried []*Upstream, first bool) *Upstream {
	now := time.Now()
	var buf [8]*Upstream
	candidates := buf[:0]
	var fallback *Upstream
	var oldest time.Time
	for _, u := range m.Upstreams {
		if contains(tried, u) {
			continue
		}
		a := u.state.check(now, m.maxFails, m.failFor)
		switch {
		case a.ok:
			candidates = append(candidates, u)
		case a.reason != OutcomeRateLimited && (fallback == nil || a.lastFail.Before(oldest)):
			fallback, oldest = u, a.lastFail
		}
	}
	switch {
	case len(candidates) == 1:
		return candidates[0]
	case len(candidates) > 1:
		return m.policy.Select(candidates, m.policyState, r)
	case first:
		return fallback
	}
	return nil
}

func contains(list []*Upstream, u *Upstream) bool {
	for _, v := range list {
		if v == u {
			return true
		}
	}
	return false
}

// try sends the call to u and waits for the answer's first byte.
func (h *Handler) try(ctx context.Context, clock *callClock, m *Model, u *Upstream, endpoint llm.Endpoint, req *llm.Request, hdr http.Header) *try {
	t := &try{model: m, up: u, begin: time.Now(), timeout: m.firstByteTimeout(u, req.Stream),
		exchange: Exchange{Endpoint: endpoint, Request: req, Upstream: u, Model: u.upstreamName, Header: hdr}}
	t.x = &t.exchange
	u.state.inFlight.Add(1)
	t.ctx, t.cancel = context.WithCancelCause(ctx)
	clock.watch(t)
	timer := time.AfterFunc(t.timeout, func() {
		// A first-byte timeout no shorter than the call's own (the default
		// for unstreamed calls) fires just after the call's deadline: that
		// is then the call's timeout, whichever timer ran first.
		if clock.expired() {
			t.cancel(errCallTimeout)
			return
		}
		t.cancel(errFirstByte)
	})
	defer timer.Stop()

	provider := u.provider
	if a, ok := provider.(Answerer); ok {
		body, hdr, ok, err := a.Answer(t.x)
		if err != nil {
			return t.fail(OutcomeRequestFailed, err)
		}
		if ok {
			t.status, t.body, t.header = http.StatusOK, body, hdr
			return t.succeed()
		}
	}
	var resp *http.Response
	for redo := true; ; redo = false {
		ureq, err := provider.NewRequest(t.ctx, t.x)
		if err != nil {
			var ce *llm.Error
			if errors.As(err, &ce) {
				// The client's request cannot be served this way.
				t.clientErr = ce
				return t.fail(OutcomeClientError, err)
			}
			return t.fail(OutcomeRequestFailed, err)
		}
		if resp, err = u.client.RoundTrip(ureq); err != nil {
			return t.fail(t.brokenOutcome(OutcomeConnectError), err)
		}
		t.status = resp.StatusCode
		if resp.StatusCode < 400 {
			break
		}
		body, _ := llm.ReadAll(resp.Body, maxErrorBody)
		resp.Body.Close()
		if rd, ok := provider.(Redoer); !ok || !redo || !rd.Redo(t.x, resp.StatusCode, body) {
			return t.failStatus(resp, body)
		}
	}
	if req.Stream && strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		t.resp = resp
		t.idle = &idleReader{r: resp.Body, d: m.streamIdle, cancel: t.cancel}
		t.stream = provider.Stream(t.x, t.idle)
		held := 0
		for {
			ev, err := t.stream.Next()
			if ev.Usage != nil {
				t.usage = ev.Usage
			}
			if err == io.EOF {
				if len(ev.Data) > 0 {
					t.held = append(t.held, ev.Data)
				}
				t.eof = true
				break
			}
			if err != nil {
				resp.Body.Close()
				return t.fail(t.brokenOutcome(OutcomeStreamBroken), err)
			}
			held += len(ev.Data)
			if ev.Content || held > maxHeld || (held > 0 && !m.holdStream) {
				// Relayed before the next Next, so not copied.
				t.held = append(t.held, ev.Data)
				t.more = ev.More
				break
			}
			if len(ev.Data) > 0 {
				t.held = append(t.held, bytes.Clone(ev.Data))
			}
		}
		if !timer.Stop() && !t.eof {
			// The timer fired as the commit event came: the stream is
			// cancelled already.
			resp.Body.Close()
			return t.fail(OutcomeTimeout, errFirstByte)
		}
		t.idle.arm()
		return t.succeed()
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, holdMax+1))
	if err == nil && len(body) > holdMax {
		if rl, ok := provider.(Relayer); ok && rl.Relays(t.x) {
			// Too large to hold: relayed as it comes (relayLarge).
			t.body, t.resp, t.large = body, resp, rl
			return t.succeed()
		}
		var rest []byte
		rest, err = llm.ReadAll(resp.Body, maxResponseBody-holdMax-1)
		body = append(body, rest...)
	}
	resp.Body.Close()
	if err != nil {
		return t.fail(t.brokenOutcome(OutcomeConnectError), err)
	}
	out, usage, err := provider.Response(t.x, body)
	if err != nil {
		return t.fail(OutcomeBadResponse, err)
	}
	t.body, t.usage = out, usage
	return t.succeed()
}

// brokenOutcome tells why a try's request or stream failed: one of its
// timers, the client leaving, or else the upstream (orElse).
func (t *try) brokenOutcome(orElse Outcome) Outcome {
	switch cause := context.Cause(t.ctx); {
	case cause == nil:
		return orElse
	case errors.Is(cause, errFirstByte):
		return OutcomeTimeout
	case errors.Is(cause, errCallTimeout):
		return OutcomeCallTimeout
	case errors.Is(cause, errStreamIdle):
		return OutcomeStreamBroken
	}
	return OutcomeClientGone
}

// failStatus classifies an upstream's error response, whose body was read.
func (t *try) failStatus(resp *http.Response, body []byte) *try {
	o := classifyStatus(resp.StatusCode)
	e := t.up.provider.Error(t.x, resp.StatusCode, body)
	e.Status = resp.StatusCode
	if key := t.up.key; key != "" {
		e.Message = strings.ReplaceAll(e.Message, key, "[redacted]")
	}
	switch o {
	case OutcomeRateLimited:
		t.cooldown = retryAfter(resp.Header, time.Now())
		if t.cooldown == 0 {
			t.cooldown = rateLimitCooldown
		}
	case OutcomeAuthRefused:
		t.cooldown = authCooldown
		// The upstream's text may echo part of the gateway's key.
		e.Message = "the upstream refused the gateway's credentials"
	case OutcomeClientError:
		t.clientErr = e
	}
	return t.fail(o, fmt.Errorf("upstream answered %d: %s", resp.StatusCode, e.Message))
}

func (t *try) fail(o Outcome, cause error) *try {
	t.outcome, t.cause, t.latency = o, cause, time.Since(t.begin)
	t.cancel(nil)
	t.up.state.inFlight.Add(-1)
	if o != OutcomeClientGone && o != OutcomeCallTimeout {
		t.up.state.record(o, t.status, t.cooldown, time.Now())
	}
	return t
}

func (t *try) succeed() *try {
	t.outcome, t.latency = OutcomeOK, time.Since(t.begin)
	return t
}

// finish ends a successful try once its answer is relayed: outcome is OK or
// Truncated.
func (t *try) finish(o Outcome) {
	t.cancel(nil)
	if t.resp != nil {
		t.resp.Body.Close()
	}
	t.idle.stop()
	t.up.state.inFlight.Add(-1)
	t.up.state.record(o, t.status, 0, time.Now())
}

// idleReader cancels a stream whose upstream sends nothing for d. Only the
// wait on the upstream counts: the clock runs during Read, not while the
// relay writes to a slow client. Reads only note when they start and end;
// one timer per stream looks at that every d at most, instead of being
// reset twice for every read.
type idleReader struct {
	r      io.Reader
	d      time.Duration
	cancel context.CancelCauseFunc
	timer  *time.Timer
	// since is when the Read in progress started (as an offset of
	// idleEpoch's monotonic clock), 0 when none is.
	since atomic.Int64
	done  atomic.Bool
}

// idleEpoch is the origin of idleReader's clock.
var idleEpoch = time.Now()

// arm starts watching, once the stream is committed to the client; the
// first-byte timeout covers the wait before.
func (i *idleReader) arm() {
	// Set before it can fire: check uses it.
	i.timer = time.AfterFunc(time.Duration(math.MaxInt64), i.check)
	i.timer.Reset(i.d)
}

// check cancels the stream if its Read has waited d, else looks again
// when it would have.
func (i *idleReader) check() {
	if i.done.Load() {
		return
	}
	next := i.d
	if since := i.since.Load(); since != 0 {
		waited := time.Duration(int64(time.Since(idleEpoch)) - since)
		if waited >= i.d {
			i.cancel(errStreamIdle)
			return
		}
		next = i.d - waited
	}
	i.timer.Reset(next)
}

func (i *idleReader) stop() {
	if i != nil && i.timer != nil {
		i.done.Store(true)
		i.timer.Stop()
	}
}

func (i *idleReader) Read(p []byte) (int, error) {
	if i.timer == nil {
		return i.r.Read(p)
	}
	i.since.Store(max(int64(time.Since(idleEpoch)), 1))
	n, err := i.r.Read(p)
	i.since.Store(0)
	return n, err
}

// logTry logs a failed try. Failures the operator must act on (5xx, rate
// limits, timeouts, refused credentials) are warnings; a client's mistake
// would flood the log at warn, so it is logged at debug.
func (h *Handler) logTry(call *llm.Call, t *try) {
	level, msg := zapcore.WarnLevel, "upstream try failed"
	switch t.outcome {
	case OutcomeClientError, OutcomeClientGone:
		level = zapcore.DebugLevel
	case OutcomeAuthRefused:
		level, msg = zapcore.ErrorLevel, "upstream refused the gateway's key; it rests for "+authCooldown.String()
	}
	cause := t.cause
	var ue *url.Error
	if errors.As(cause, &ue) {
		// The URL holds nothing secret, but the host is logged apart.
		cause = ue.Err
	}
	if ce := h.logger.Check(level, msg); ce != nil {
		ce.Write(zap.String("request_id", call.ID),
			zap.String("model", t.model.Name),
			zap.String("upstream", t.up.id),
			zap.String("outcome", string(t.outcome)),
			zap.Int("status", t.status),
			zap.Duration("latency", t.latency),
			zap.Error(cause))
	}
}

// answerFailure answers a call whose every try failed, from the outcome of
// its last try (README "Retries and failover" has the table).
func (h *Handler) answerFailure(w http.ResponseWriter, r *http.Request, call *llm.Call, m *Model, models []*Model, last *try, outcome Outcome) {
	var e *llm.Error
	switch outcome {
	case OutcomeClientGone:
		h.clientGone(call)
		return
	case OutcomeClientError:
		e = last.clientErr
	case OutcomeRateLimited:
		e = llm.Errorf(http.StatusServiceUnavailable, llm.TypeUpstream, "upstream_unavailable",
			"every upstream serving model '%s' is rate-limited or resting after failures; retry later", call.Model)
		w.Header().Set("Retry-After", strconv.Itoa(soonestBack(models)))
	case OutcomeAuthRefused:
		e = llm.Errorf(http.StatusBadGateway, llm.TypeUpstream, "upstream_auth_failed",
			"the upstream serving model '%s' refused the gateway's credentials (status %d); the gateway's operator must fix its key",
			call.Model, last.status)
	case OutcomeTimeout:
		e = llm.Errorf(http.StatusGatewayTimeout, llm.TypeUpstream, "upstream_timeout",
			"the upstream serving model '%s' did not answer within %s", call.Model, last.timeout)
	case OutcomeCallTimeout:
		e = llm.Errorf(http.StatusGatewayTimeout, llm.TypeUpstream, "timeout",
			"the call to model '%s' took longer than the gateway's timeout of %s", call.Model, m.timeout)
	case OutcomeServerError:
		e = llm.Errorf(http.StatusBadGateway, llm.TypeUpstream, "upstream_error",
			"the upstream serving model '%s' failed (status %d)", call.Model, last.status)
	case OutcomeStreamBroken:
		e = llm.Errorf(http.StatusBadGateway, llm.TypeUpstream, "upstream_stream_broken",
			"the upstream serving model '%s' broke off its stream", call.Model)
	case OutcomeBadResponse:
		e = llm.Errorf(http.StatusBadGateway, llm.TypeUpstream, "bad_upstream_response",
			"the upstream serving model '%s' sent an answer the gateway could not read", call.Model)
	case OutcomeRequestFailed:
		e = llm.Errorf(http.StatusBadGateway, llm.TypeUpstream, "upstream_request_failed",
			"the gateway could not build the request for the upstream serving model '%s'", call.Model)
	default: // OutcomeConnectError
		e = llm.Errorf(http.StatusBadGateway, llm.TypeUpstream, "upstream_unreachable",
			"the upstream serving model '%s' could not be reached or broke off its answer", call.Model)
	}
	reject(w, r, e)
}

// soonestBack is how many seconds until the first upstream of the models
// is back, at least 1.
func soonestBack(models []*Model) int {
	now := time.Now()
	var soonest time.Time
	for _, m := range models {
		for _, u := range m.Upstreams {
			a := u.state.check(now, m.maxFails, m.failFor)
			if a.ok {
				return 1
			}
			if soonest.IsZero() || a.until.Before(soonest) {
				soonest = a.until
			}
		}
	}
	return max(1, int((soonest.Sub(now)+time.Second-1)/time.Second))
}

func (h *Handler) clientGone(call *llm.Call) {
	call.ClientAborted = true
	if call.Status == 0 {
		call.Status = statusClientClosed
	}
	if call.Error == "" {
		call.Error = "the client closed the request"
	}
}

// relay sends a successful try's answer to the client.
func (h *Handler) relay(w http.ResponseWriter, r *http.Request, call *llm.Call, t *try) {
	call.ServedModel, call.Price = t.model.Name, t.model.Price
	if t.usage != nil {
		call.Usage, call.UsageSource = *t.usage, llm.UsageUpstream
	}
	if t.large != nil {
		h.relayLarge(w, r, call, t)
		return
	}
	if t.stream == nil {
		defer t.finish(OutcomeOK)
		call.Status = t.status
		call.TTFT = time.Since(call.Start)
		hdr := w.Header()
		for name, values := range t.header {
			hdr[name] = values
		}
		hdr.Set("Content-Type", "application/json")
		hdr.Set("Content-Length", strconv.Itoa(len(t.body)))
		w.WriteHeader(t.status)
		_, _ = w.Write(t.body)
		if t.usage == nil {
			// The client has its whole answer before the counting.
			_ = http.NewResponseController(w).Flush()
			estimateAnswer(call, t)
		}
		return
	}
	outcome := h.relayStream(w, r, call, t)
	if outcome == OutcomeTruncated {
		call.Attempts[len(call.Attempts)-1].Outcome = string(outcome)
	}
	t.finish(outcome)
	if outcome == OutcomeOK && call.UsageSource != llm.UsageUpstream {
		// The client has its whole answer before the counting.
		_ = http.NewResponseController(w).Flush()
	}
	settleStream(call, t, outcome == OutcomeOK)
	t.sent.release()
}

// relayLarge sends an unstreamed answer too large to hold as it arrives,
// and reads its usage from its last bytes. Once part of it is sent nothing
// can be retried: a failure cuts the answer short, and the record says so.
func (h *Handler) relayLarge(w http.ResponseWriter, r *http.Request, call *llm.Call, t *try) {
	hdr := w.Header()
	hdr.Set("Content-Type", "application/json")
	hdr.Del("Content-Length")
	if n := t.resp.ContentLength; n > 0 {
		hdr.Set("Content-Length", strconv.FormatInt(n, 10))
	}
	w.WriteHeader(t.status)
	call.Status = t.status
	call.TTFT = time.Since(call.Start)
	tw := &tailWriter{w: w}
	_, err := tw.Write(t.body)
	if err == nil {
		_, err = io.Copy(tw, t.resp.Body)
	}
	outcome := OutcomeOK
	switch {
	case tw.err != nil || (err != nil && r.Context().Err() != nil):
		h.clientGone(call)
		outcome = OutcomeClientGone
	case err != nil:
		e := llm.Errorf(http.StatusBadGateway, llm.TypeUpstream, "upstream_stream_broken",
			"the upstream serving model '%s' broke off its answer; the answer is incomplete", call.Model)
		call.Truncated = true
		call.Error, call.ErrorCode = e.Message, e.Code
		call.Attempts[len(call.Attempts)-1].Outcome = string(OutcomeTruncated)
		outcome = OutcomeTruncated
		h.logger.Warn("upstream broke off an answer after the client got part of it",
			zap.String("request_id", call.ID), zap.String("model", t.model.Name),
			zap.String("upstream", t.up.id), zap.Error(err))
	}
	if u := t.large.TailUsage(t.x, tw.tail()); u != nil {
		call.Usage, call.UsageSource = *u, llm.UsageUpstream
	}
	t.finish(outcome)
}

// tailWriter writes to w and keeps the last tailMax bytes written.
type tailWriter struct {
	w   io.Writer
	buf []byte
	err error // the first write error: the client is gone
}

func (tw *tailWriter) Write(p []byte) (int, error) {
	n, err := tw.w.Write(p)
	if err != nil && tw.err == nil {
		tw.err = err
	}
	if n >= tailMax {
		tw.buf = append(tw.buf[:0], p[n-tailMax:n]...)
		return n, err
	}
	tw.buf = append(tw.buf, p[:n]...)
	if len(tw.buf) > 2*tailMax {
		tw.buf = append(tw.buf[:0], tw.buf[len(tw.buf)-tailMax:]...)
	}
	return n, err
}

func (tw *tailWriter) tail() []byte { return tw.buf[max(0, len(tw.buf)-tailMax):] }

// relayStream sends a committed stream event by event, flushing each at
// once unless the next is already at hand (then one flush covers both).
// A failure now cuts the stream with an error event and no [DONE], so the
// client can tell it is incomplete; nothing is retried or spliced.
func (h *Handler) relayStream(w http.ResponseWriter, r *http.Request, call *llm.Call, t *try) Outcome {
	rc := http.NewResponseController(w)
	hdr := w.Header()
	hdr.Set("Content-Type", "text/event-stream")
	hdr.Set("Cache-Control", "no-cache")
	hdr.Set("X-Accel-Buffering", "no")
	hdr.Del("Content-Length")
	w.WriteHeader(t.status)
	call.Status = t.status
	call.TTFT = time.Since(call.Start)
	var out burst
	defer out.release()
	for _, data := range t.held {
		t.sent.add(data)
		out.add(data)
	}
	// The first byte goes at once, unless the next event is at hand: then
	// both go in one write. The whole stream, when it ended already, goes
	// as the handler returns.
	if !t.eof && !t.more {
		if err := out.flush(w, rc); err != nil {
			h.clientGone(call)
			return OutcomeClientGone
		}
	}
	for !t.eof {
		ev, err := t.stream.Next()
		if ev.Usage != nil {
			call.Usage, call.UsageSource = *ev.Usage, llm.UsageUpstream
		}
		if len(ev.Data) > 0 {
			t.sent.add(ev.Data)
			out.add(ev.Data)
		}
		if err == io.EOF {
			// Not flushed: net/http sends what is left as the handler
			// returns, with the end of the chunked body in the same
			// write, one write fewer per stream. The stream's final
			// events say More for the same reason.
			break
		}
		if !ev.More || err != nil {
			if ferr := out.flush(w, rc); ferr != nil {
				h.clientGone(call)
				return OutcomeClientGone
			}
		}
		if err == nil {
			continue
		}
		var e *llm.Error
		switch cause := context.Cause(t.ctx); {
		case errors.Is(cause, errStreamIdle):
			e = llm.Errorf(http.StatusGatewayTimeout, llm.TypeUpstream, "stream_idle_timeout",
				"the upstream serving model '%s' sent nothing for %s; the stream is incomplete", call.Model, t.model.streamIdle)
		case errors.Is(cause, errCallTimeout):
			e = llm.Errorf(http.StatusGatewayTimeout, llm.TypeUpstream, "timeout",
				"the call to model '%s' took longer than the gateway's timeout of %s; the stream is incomplete", call.Model, t.model.timeout)
		case r.Context().Err() != nil:
			h.clientGone(call)
			return OutcomeClientGone
		default:
			e = llm.Errorf(http.StatusBadGateway, llm.TypeUpstream, "upstream_stream_broken",
				"the upstream serving model '%s' broke off its stream; the stream is incomplete", call.Model)
		}
		call.Truncated = true
		call.Error, call.ErrorCode = e.Message, e.Code
		h.logger.Warn("upstream stream broke off after the client got part of it",
			zap.String("request_id", call.ID),
			zap.String("model", t.model.Name),
			zap.String("upstream", t.up.id),
			zap.String("error_code", e.Code),
			zap.Error(err))
		if se, ok := t.stream.(StreamErrorer); ok {
			_, _ = w.Write(se.ErrorEvent(e))
		} else {
			_, _ = w.Write(errorEvent(e))
		}
		_ = rc.Flush()
		return OutcomeTruncated
	}
	if err := out.write(w); err != nil {
		h.clientGone(call)
		return OutcomeClientGone
	}
	return OutcomeOK
}

// burst gathers the events a stream sends in one flush, so that the
// response is written once a flush rather than once an event: Caddy's
// idle-timeout writer moves the connection's write deadline on every
// Write (a clock read and a timer change), which cost a stream of 20
// events more CPU than copying them. Its buffer is pooled and held only
// from an event to its flush.
type burst struct{ buf *[]byte }

var burstPool = sync.Pool{New: func() any {
	b := make([]byte, 0, 4<<10)
	return &b
}}

// maxBurstPooled bounds the buffers kept in the pool: one huge event does
// not pin its memory for later streams.
const maxBurstPooled = 64 << 10

func (b *burst) add(p []byte) {
	if b.buf == nil {
		b.buf = burstPool.Get().(*[]byte)
	}
	*b.buf = append(*b.buf, p...)
}

// write writes what was gathered, if anything, and lets the buffer go.
func (b *burst) write(w io.Writer) error {
	if b.buf == nil {
		return nil
	}
	_, err := w.Write(*b.buf)
	b.release()
	return err
}

// flush writes what was gathered, if anything, and flushes it.
func (b *burst) flush(w io.Writer, rc *http.ResponseController) error {
	if b.buf == nil {
		return nil
	}
	if err := b.write(w); err != nil {
		return err
	}
	return rc.Flush()
}

func (b *burst) release() {
	if b.buf == nil {
		return
	}
	if cap(*b.buf) <= maxBurstPooled {
		*b.buf = (*b.buf)[:0]
		burstPool.Put(b.buf)
	}
	b.buf = nil
}

// errorEvent is the SSE event OpenAI's API sends for an error in a stream.
func errorEvent(e *llm.Error) []byte {
	b := append([]byte("data: "), e.JSON()...)
	return append(b, '\n', '\n')
}
