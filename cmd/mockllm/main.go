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
//	-latency d           pause before the response headers
//	-fail-status code    answer every request with this status (400-599) and an
//	                     OpenAI-style error
//	-drop-after n        abort streams after n content chunks, and other replies
//	                     before they are sent
//	-no-usage            report no token usage
//
// It serves POST /v1/chat/completions, /v1/completions, /v1/embeddings and
// GET /v1/models (also without /v1), streamed or not; replies are "chunk0
// chunk1 ...". It also speaks Anthropic's POST /v1/messages (key in
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
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
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
	latency := flag.Duration("latency", 0, "pause before the response headers")
	failStatus := flag.Int("fail-status", 0, "answer every request with this HTTP status (400-599) and an OpenAI-style error")
	dropAfter := flag.Int("drop-after", 0, "abort streams after this many content chunks, and other replies before they are sent")
	noUsage := flag.Bool("no-usage", false, "report no token usage")
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

	fake := &fakellm.Server{
		APIKey: *key,
		// A benchmark sends millions of requests: keep none of them.
		KeepRequests: -1,
		Behavior: fakellm.Behavior{
			Chunks:     *chunks,
			ChunkDelay: *chunkDelay,
			Latency:    *latency,
			Status:     *failStatus,
			DropAfter:  *dropAfter,
			NoUsage:    *noUsage,
		},
	}
	if err := serve(*listen, fake); err != nil {
		log.Fatalf("mockllm: %v", err)
	}
}

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
