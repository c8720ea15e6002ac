// Command mockllm is a fake LLM provider that speaks the OpenAI API, for
// demos and benchmarks of the gateway: point an upstream at it and every
// completion is answered at once (or as slowly as asked), deterministically,
// without a model or a network.
//
// Usage:
//
//	mockllm [flags]
//
// Flags:
//
//	-listen addr         address to listen on (default 127.0.0.1:9999)
//	-key key             API key clients must send as "Authorization: Bearer key";
//	                     without it every client is let in
//	-chunks n            content chunks per reply (default 5)
//	-chunk-delay d       pause before each streamed chunk, e.g. 20ms
//	-buffered            send a stream's events without a flush each: they leave
//	                     in as few writes as the response buffer allows, and
//	                     before each pause (a benchmark's fake, whose own write
//	                     calls would take the CPU the proxies share)
//	-latency d           pause before the response headers
//	-fail-status code    answer every request with this status (400-599) and an
//	                     OpenAI-style error
//	-drop-after n        abort streams after n content chunks, and other replies
//	                     before they are sent
//	-no-usage            report no token usage
//	-agent               script coding agents' turns: a request that declares a
//	                     shell tool (Claude Code's Bash, Codex's exec_command, ...)
//	                     gets a call of it with a command that writes the marker,
//	                     upper-cased, into a file; once the result is back, an
//	                     answer quoting it ("The command printed MARKER.")
//	-agent-marker m      the marker (default fakellm-agent-ok)
//	-agent-file f        the file the command writes (default fakellm-agent.txt)
//	-no-responses        answer POST /v1/responses with 404, as a server that
//	                     speaks chat completions only does
//	-requests file       append every request to file as a JSON line (time,
//	                     method, path, model, stream, body, and the status it
//	                     got), for scripts that check what reached the provider
//
// It serves POST /v1/chat/completions, /v1/completions, /v1/embeddings and
// GET /v1/models (also without /v1), streamed or not; replies are "chunk0
// chunk1 ...". It also speaks OpenAI's POST /v1/responses, Anthropic's
// POST /v1/messages (key in
// x-api-key), Gemini's POST /v1beta/models/{model}:generateContent and
// :streamGenerateContent?alt=sse (key in x-goog-api-key) and Azure OpenAI's
// /openai/deployments/{deployment}/chat/completions?api-version=... (key in
// api-key), with the same flags. For example:
//
//	mockllm -key sk-mock -chunk-delay 20ms &
//	curl -N http://127.0.0.1:9999/v1/chat/completions -H 'Authorization: Bearer sk-mock' \
//		-d '{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"hi"}]}'
//
// It stops on SIGINT or SIGTERM, letting the requests under way finish for
// a few seconds.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/llmoneapi/llmoneapi/internal/fakellm"
)

// shutdownGrace bounds how long a stop waits for streams under way, which
// a long -chunk-delay could otherwise make wait for minutes.
const shutdownGrace = 5 * time.Second

func main() {
	listen := flag.String("listen", "127.0.0.1:9999", "address to listen on")
	key := flag.String("key", "", "API key clients must send as a bearer token; empty lets every client in")
	chunks := flag.Int("chunks", fakellm.DefaultChunks, "content chunks per reply")
	chunkDelay := flag.Duration("chunk-delay", 0, "pause before each streamed chunk")
	buffered := flag.Bool("buffered", false, "send a stream's events without a flush each, in as few writes as the response buffer allows (flushed before each pause)")
	latency := flag.Duration("latency", 0, "pause before the response headers")
	failStatus := flag.Int("fail-status", 0, "answer every request with this HTTP status (400-599) and an OpenAI-style error")
	dropAfter := flag.Int("drop-after", 0, "abort streams after this many content chunks, and other replies before they are sent")
	noUsage := flag.Bool("no-usage", false, "report no token usage")
	agent := flag.Bool("agent", false, "script coding agents' turns: a call of their shell tool, then an answer quoting its output")
	agentMarker := flag.String("agent-marker", fakellm.DefaultAgentMarker, "with -agent: the marker the command writes, upper-cased")
	agentFile := flag.String("agent-file", fakellm.DefaultAgentFile, "with -agent: the file the command writes")
	noResponses := flag.Bool("no-responses", false, "answer POST /v1/responses with 404, as a chat-completions-only server")
	requests := flag.String("requests", "", "append every request to this file as a JSON line")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "mockllm: unexpected argument %q\n", flag.Arg(0))
		flag.Usage()
		os.Exit(2)
	}
	if *failStatus != 0 && (*failStatus < 400 || *failStatus > 599) {
		fmt.Fprintf(os.Stderr, "mockllm: -fail-status %d: want a status from 400 to 599\n", *failStatus)
		os.Exit(2)
	}

	var script *fakellm.Agent
	if *agent {
		script = &fakellm.Agent{Marker: *agentMarker, File: *agentFile}
		if err := script.Validate(); err != nil {
			fmt.Fprintf(os.Stderr, "mockllm: %v\n", err)
			os.Exit(2)
		}
	}

	fake := &fakellm.Server{
		APIKey: *key,
		// A benchmark sends millions of requests: keep none of them.
		KeepRequests: -1,
		Behavior: fakellm.Behavior{
			Chunks:      *chunks,
			ChunkDelay:  *chunkDelay,
			Buffered:    *buffered,
			Latency:     *latency,
			Status:      *failStatus,
			DropAfter:   *dropAfter,
			NoUsage:     *noUsage,
			Agent:       script,
			NoResponses: *noResponses,
		},
	}
	var h http.Handler = fake
	if *requests != "" {
		f, err := os.OpenFile(*requests, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
		if err != nil {
			log.Fatalf("mockllm: -requests: %v", err)
		}
		defer f.Close()
		h = &requestLog{next: fake, out: f}
	}
	if err := serve(*listen, h); err != nil {
		log.Fatalf("mockllm: %v", err)
	}
}

// requestLog writes each request as one JSON line once the fake has
// answered it, so that a script can read what reached the provider and
// what it got.
type requestLog struct {
	next http.Handler
	mu   sync.Mutex
	out  io.Writer
}

func (l *requestLog) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, "reading the body: "+err.Error(), http.StatusBadRequest)
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	var head struct {
		Model  string `json:"model"`
		Stream bool   `json:"stream"`
	}
	_ = json.Unmarshal(body, &head) // not every request is JSON
	start := time.Now()
	sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
	defer func() {
		// A dropped connection (Behavior.DropAfter) panics through here.
		l.write(start, r, head.Model, head.Stream, body, sw.status)
	}()
	l.next.ServeHTTP(sw, r)
}

func (l *requestLog) write(start time.Time, r *http.Request, model string, stream bool, body []byte, status int) {
	line := map[string]any{
		"time": start.UTC().Format(time.RFC3339Nano), "method": r.Method, "path": r.URL.Path,
		"model": model, "stream": stream, "status": status, "body": string(body),
	}
	if json.Valid(body) {
		line["body"] = json.RawMessage(body)
	}
	b, err := json.Marshal(line)
	if err == nil {
		l.mu.Lock()
		_, err = l.out.Write(append(b, '\n'))
		l.mu.Unlock()
	}
	if err != nil {
		log.Printf("mockllm: -requests: %v", err)
	}
}

// statusWriter keeps the status a response was sent with.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(status int) {
	w.status = status
	w.ResponseWriter.WriteHeader(status)
}

// Unwrap lets http.ResponseController flush the stream through it.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func serve(addr string, h http.Handler) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	log.Printf("mockllm: serving the OpenAI API on http://%s/v1", ln.Addr())

	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	stop() // a second signal kills at once

	shutdownCtx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); errors.Is(err, context.DeadlineExceeded) {
		return srv.Close()
	} else if err != nil {
		return err
	}
	log.Print("mockllm: stopped")
	return nil
}
