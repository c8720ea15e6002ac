package route

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/llmoneapi/llmoneapi/llm"
)

const (
	// defaultTimeout bounds an upstream's answer when its config sets none.
	defaultTimeout = 5 * time.Minute
	// maxErrorBody bounds how much of an upstream error body is read.
	maxErrorBody = 1 << 20
	// maxResponseBody bounds an unstreamed upstream answer.
	maxResponseBody = 64 << 20
	// statusClientClosed is the status recorded when the client goes away
	// before it gets an answer (nginx's and Caddy's 499).
	statusClientClosed = 499
)

// forward sends the call to upstream u and relays the answer to the client.
func (h *Handler) forward(w http.ResponseWriter, r *http.Request, call *llm.Call, endpoint llm.Endpoint, req *llm.Request, u *Upstream) {
	provider, providerName := u.Provider()
	x := &Exchange{Endpoint: endpoint, Request: req, Upstream: u, Model: req.Model}
	if u.Model != "" {
		x.Model = u.Model
	}
	call.UpstreamModel, call.Provider, call.Upstream = x.Model, providerName, u.Host()

	// The upstream request lives in the client's context, so a client that
	// goes away stops the upstream call (and its spend) at once.
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	timeout := time.Duration(u.Timeout)
	if timeout == 0 {
		timeout = defaultTimeout
	}
	var timedOut atomic.Bool
	timer := time.AfterFunc(timeout, func() {
		timedOut.Store(true)
		cancel()
	})
	defer timer.Stop()

	ureq, err := provider.NewRequest(ctx, x)
	if err != nil {
		h.fail(w, r, call, x, llm.Errorf(http.StatusBadGateway, llm.TypeUpstream, "upstream_request_failed",
			"the gateway could not build the request for the upstream serving model '%s'", call.Model), err)
		return
	}
	resp, err := h.transport.RoundTrip(ureq)
	if err != nil {
		h.failTransport(w, r, call, x, timeout, &timedOut, err)
		return
	}
	defer resp.Body.Close()

	switch {
	case resp.StatusCode >= 400:
		h.upstreamError(w, r, call, x, resp)
	case req.Stream && strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream"):
		// The timeout covers the wait for the stream's first byte; the
		// stream itself may run as long as the model writes.
		if !timer.Stop() {
			h.failTransport(w, r, call, x, timeout, &timedOut, context.DeadlineExceeded)
			return
		}
		h.relayStream(w, r, call, x, resp)
	default:
		body, err := llm.ReadAll(resp.Body, maxResponseBody)
		if err != nil {
			h.failTransport(w, r, call, x, timeout, &timedOut, err)
			return
		}
		h.relayBody(w, r, call, x, resp.StatusCode, body)
	}
}

// failTransport answers for an upstream that could not be reached or whose
// answer broke off before the client got any of it.
func (h *Handler) failTransport(w http.ResponseWriter, r *http.Request, call *llm.Call, x *Exchange, timeout time.Duration, timedOut *atomic.Bool, err error) {
	switch {
	case r.Context().Err() != nil:
		h.clientGone(call)
	case timedOut.Load():
		h.fail(w, r, call, x, llm.Errorf(http.StatusGatewayTimeout, llm.TypeUpstream, "upstream_timeout",
			"the upstream serving model '%s' did not answer within %s", call.Model, timeout), err)
	default:
		h.fail(w, r, call, x, llm.Errorf(http.StatusBadGateway, llm.TypeUpstream, "upstream_unreachable",
			"the upstream serving model '%s' could not be reached or broke off its answer", call.Model), err)
	}
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

// fail writes e to the client and logs the cause, which may name hosts and
// addresses the client need not see. Neither carries the upstream key: URLs
// are dropped from transport errors, and keys never sit in URLs.
func (h *Handler) fail(w http.ResponseWriter, r *http.Request, call *llm.Call, x *Exchange, e *llm.Error, cause error) {
	var ue *url.Error
	if errors.As(cause, &ue) {
		cause = ue.Err
	}
	// An upstream 4xx is most often the client's own mistake (a bad
	// parameter) and would flood the log at warn; failures the operator must
	// act on (5xx, rate limits, refused credentials, which become 502) stay
	// at warn.
	level := zapcore.DebugLevel
	if e.Status >= 500 || e.Status == http.StatusTooManyRequests {
		level = zapcore.WarnLevel
	}
	if ce := h.logger.Check(level, "upstream call failed"); ce != nil {
		ce.Write(zap.String("request_id", call.ID),
			zap.String("model", call.Model),
			zap.String("provider", call.Provider),
			zap.String("upstream", x.Upstream.Host()),
			zap.Int("status", e.Status),
			zap.Error(cause))
	}
	e.Write(w, r)
}

// upstreamError relays an upstream error as an OpenAI-style error.
func (h *Handler) upstreamError(w http.ResponseWriter, r *http.Request, call *llm.Call, x *Exchange, resp *http.Response) {
	body, _ := llm.ReadAll(resp.Body, maxErrorBody)
	provider, _ := x.Upstream.Provider()
	var e *llm.Error
	switch resp.StatusCode {
	case http.StatusUnauthorized, http.StatusForbidden, http.StatusProxyAuthRequired:
		// The upstream refused the gateway's own key: not the client's
		// fault, and the upstream's message may echo part of that key.
		e = llm.Errorf(http.StatusBadGateway, llm.TypeUpstream, "upstream_auth_failed",
			"the upstream serving model '%s' refused the gateway's credentials (status %d); the gateway's operator must fix its key",
			call.Model, resp.StatusCode)
	default:
		e = provider.Error(x, resp.StatusCode, body)
		e.Status = resp.StatusCode
		if key := x.Upstream.Key(); key != "" {
			e.Message = strings.ReplaceAll(e.Message, key, "[redacted]")
		}
		if ra := resp.Header.Get("Retry-After"); ra != "" {
			w.Header().Set("Retry-After", ra)
		}
	}
	h.fail(w, r, call, x, e, fmt.Errorf("upstream answered %d: %s", resp.StatusCode, e.Message))
}

// relayBody sends an unstreamed answer.
func (h *Handler) relayBody(w http.ResponseWriter, r *http.Request, call *llm.Call, x *Exchange, status int, body []byte) {
	provider, _ := x.Upstream.Provider()
	out, usage, err := provider.Response(x, body)
	if err != nil {
		h.fail(w, r, call, x, llm.Errorf(http.StatusBadGateway, llm.TypeUpstream, "bad_upstream_response",
			"the upstream serving model '%s' sent an answer the gateway could not read", call.Model), err)
		return
	}
	if usage != nil {
		call.Usage, call.UsageSource = *usage, llm.UsageUpstream
	}
	call.Status = status
	call.TTFT = time.Since(call.Start)
	hdr := w.Header()
	hdr.Set("Content-Type", "application/json")
	hdr.Set("Content-Length", strconv.Itoa(len(out)))
	w.WriteHeader(status)
	_, _ = w.Write(out)
}

// relayStream sends a streamed answer event by event, flushing each at once
// unless the next is already at hand (then one flush covers both).
// Until the first event reaches the client a failure is still answered with
// an ordinary error response; after it, the stream is cut with an error event
// and no [DONE], so the client can tell it is incomplete.
func (h *Handler) relayStream(w http.ResponseWriter, r *http.Request, call *llm.Call, x *Exchange, resp *http.Response) {
	provider, _ := x.Upstream.Provider()
	s := provider.Stream(x, resp.Body)
	rc := http.NewResponseController(w)
	started, unflushed := false, false
	start := func() {
		hdr := w.Header()
		hdr.Set("Content-Type", "text/event-stream")
		hdr.Set("Cache-Control", "no-cache")
		hdr.Set("X-Accel-Buffering", "no")
		hdr.Del("Content-Length")
		w.WriteHeader(resp.StatusCode)
		call.Status = resp.StatusCode
		call.TTFT = time.Since(call.Start)
		started = true
	}
	for {
		ev, err := s.Next()
		if ev.Usage != nil {
			call.Usage, call.UsageSource = *ev.Usage, llm.UsageUpstream
		}
		if len(ev.Data) > 0 {
			if !started {
				start()
			}
			if _, werr := w.Write(ev.Data); werr != nil {
				h.clientGone(call)
				return
			}
			unflushed = true
		}
		if unflushed && !ev.More {
			if ferr := rc.Flush(); ferr != nil {
				h.clientGone(call)
				return
			}
			unflushed = false
		}
		if err == io.EOF {
			if !started {
				start()
			}
			return
		}
		if err == nil {
			continue
		}
		if r.Context().Err() != nil {
			h.clientGone(call)
			return
		}
		e := llm.Errorf(http.StatusBadGateway, llm.TypeUpstream, "upstream_stream_broken",
			"the upstream serving model '%s' broke off its stream", call.Model)
		if !started {
			h.fail(w, r, call, x, e, err)
			return
		}
		call.Truncated = true
		call.Error = e.Message
		h.logger.Warn("upstream stream broke off after the client got part of it",
			zap.String("request_id", call.ID),
			zap.String("model", call.Model),
			zap.String("upstream", x.Upstream.Host()),
			zap.Error(err))
		_, _ = w.Write(errorEvent(e))
		_ = rc.Flush()
		return
	}
}

// errorEvent is the SSE event OpenAI's API sends for an error in a stream.
func errorEvent(e *llm.Error) []byte {
	b := append([]byte("data: "), e.JSON()...)
	return append(b, '\n', '\n')
}
