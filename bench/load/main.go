// Command load is the closed-loop HTTP load generator of the gateway's
// benchmark (see bench/README.md): a fixed number of workers each send one
// fixed OpenAI request after another over a kept-alive connection for a fixed
// time, and it prints one JSON line with the throughput, the latency
// percentiles and the number of failed requests.
//
// Usage:
//
//	load -url http://127.0.0.1:19001/v1 -name baseline -scenario stream -duration 5s -concurrency 16
//
// Scenarios: chat (an unstreamed chat completion), stream (a streamed one,
// whose time to the first SSE data line is also measured and whose end must be
// "data: [DONE]") and embeddings. A request fails when it gets a transport
// error, a status other than 200, or a body that is not the expected answer.
// Only the requests of the measured window count: a short warm-up first opens
// the connections and warms both ends, so a measurement does not include
// TCP handshakes or cold caches.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"
)

// scenario is one kind of request: where it goes, what it sends, and how to
// tell a good answer.
type scenario struct {
	path   string
	body   string
	stream bool
	// want is a fragment every good unstreamed answer contains, so that a 200
	// with the wrong body (an error page, an empty reply) counts as an error.
	want string
}

// The bodies are what a typical SDK sends, about 300 bytes for the chat. The
// stream does not ask for stream_options.include_usage, as most clients do
// not: the gateway then asks the upstream for usage and removes the usage
// chunk again, and that work is part of what is measured.
var scenarios = map[string]scenario{
	"chat": {
		path: "/chat/completions",
		body: `{"model":"bench","messages":[{"role":"system","content":"You are a helpful assistant. Answer briefly."},` +
			`{"role":"user","content":"Summarise in one sentence why a gateway in front of several LLM providers helps a team that uses many models."}],` +
			`"temperature":0.2,"max_tokens":64}`,
		want: `"choices"`,
	},
	"stream": {
		path: "/chat/completions",
		body: `{"model":"bench","messages":[{"role":"system","content":"You are a helpful assistant. Answer briefly."},` +
			`{"role":"user","content":"Summarise in one sentence why a gateway in front of several LLM providers helps a team that uses many models."}],` +
			`"temperature":0.2,"max_tokens":64,"stream":true}`,
		stream: true,
	},
	"embeddings": {
		path: "/embeddings",
		body: `{"model":"bench","input":"A gateway in front of several LLM providers gives a team one endpoint, one set of keys and one usage record."}`,
		want: `"embedding"`,
	},
}

// result is the JSON line printed for one measurement. Latencies are in
// microseconds; TTFB fields are set for streams only.
type result struct {
	Name        string  `json:"name"`
	Scenario    string  `json:"scenario"`
	Concurrency int     `json:"concurrency"`
	Seconds     float64 `json:"seconds"`
	Requests    int     `json:"requests"`
	Errors      int     `json:"errors"`
	RPS         float64 `json:"rps"`
	P50us       int64   `json:"p50_us"`
	P90us       int64   `json:"p90_us"`
	P99us       int64   `json:"p99_us"`
	TTFBP50us   int64   `json:"ttfb_p50_us,omitempty"`
	TTFBP99us   int64   `json:"ttfb_p99_us,omitempty"`
	FirstError  string  `json:"first_error,omitempty"`
}

// workerStats is what one worker collects; each worker owns its own so the
// hot loop takes no lock, and they are merged once at the end.
type workerStats struct {
	latency  []time.Duration
	ttfb     []time.Duration
	errors   int
	firstErr error
}

func main() {
	url := flag.String("url", "", "API base URL, e.g. http://127.0.0.1:19001/v1")
	key := flag.String("key", "sk-bench", "client key, sent as Authorization: Bearer")
	scenarioName := flag.String("scenario", "chat", "chat, stream or embeddings")
	duration := flag.Duration("duration", 5*time.Second, "how long to measure")
	warmup := flag.Duration("warmup", 500*time.Millisecond, "load sent before measuring, not counted")
	concurrency := flag.Int("concurrency", 16, "workers, each with one request in flight")
	name := flag.String("name", "", "name of the target in the output (default: the URL)")
	flag.Parse()

	sc, ok := scenarios[*scenarioName]
	if *url == "" || !ok || *concurrency < 1 || *duration <= 0 || flag.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "load: want -url, a -scenario of chat, stream or embeddings, -concurrency >= 1 and -duration > 0")
		flag.Usage()
		os.Exit(2)
	}
	if *name == "" {
		*name = *url
	}

	client := &http.Client{
		Transport: &http.Transport{
			// Never a proxy from the environment: the traffic stays on the
			// address given.
			Proxy: nil,
			// One idle connection per worker, so that every request reuses
			// one and no measurement pays for a handshake.
			MaxIdleConns:        *concurrency,
			MaxIdleConnsPerHost: *concurrency,
			// Neither side would compress; asking would only add work to
			// the baseline and the gateway unevenly.
			DisableCompression: true,
		},
		// A request that hangs fails instead of stalling the whole run.
		Timeout: 30 * time.Second,
	}
	l := &loader{client: client, url: strings.TrimSuffix(*url, "/") + sc.path, key: *key, sc: sc}

	if *warmup > 0 {
		l.run(*concurrency, *warmup)
	}
	start := time.Now()
	stats := l.run(*concurrency, *duration)
	elapsed := time.Since(start)

	res := summarize(stats, elapsed)
	res.Name, res.Scenario, res.Concurrency = *name, *scenarioName, *concurrency
	line, err := json.Marshal(res)
	if err != nil {
		fmt.Fprintln(os.Stderr, "load:", err)
		os.Exit(1)
	}
	fmt.Println(string(line))
}

// loader sends one scenario's request to one URL.
type loader struct {
	client *http.Client
	url    string
	key    string
	sc     scenario
}

// run keeps n requests in flight until d has passed, and returns each
// worker's stats. Requests under way at the deadline are let finish and
// counted, and the caller divides by the time until the last one ended.
func (l *loader) run(n int, d time.Duration) []workerStats {
	deadline := time.Now().Add(d)
	stats := make([]workerStats, n)
	var wg sync.WaitGroup
	for i := range stats {
		wg.Go(func() {
			ws := &stats[i]
			for time.Now().Before(deadline) {
				total, ttfb, err := l.do()
				if err != nil {
					ws.errors++
					if ws.firstErr == nil {
						ws.firstErr = err
					}
					continue
				}
				ws.latency = append(ws.latency, total)
				if l.sc.stream {
					ws.ttfb = append(ws.ttfb, ttfb)
				}
			}
		})
	}
	wg.Wait()
	return stats
}

// do sends one request and reads the whole answer. It returns the time
// until the answer ended and, for a stream, until its first data line.
func (l *loader) do() (total, ttfb time.Duration, err error) {
	req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, l.url, strings.NewReader(l.sc.body))
	if err != nil {
		return 0, 0, err
	}
	req.Header.Set("Authorization", "Bearer "+l.key)
	req.Header.Set("Content-Type", "application/json")
	if l.sc.stream {
		req.Header.Set("Accept", "text/event-stream")
	}

	start := time.Now()
	resp, err := l.client.Do(req)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return 0, 0, fmt.Errorf("status %d: %s", resp.StatusCode, bytes.TrimSpace(msg))
	}

	if !l.sc.stream {
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			return 0, 0, err
		}
		if !bytes.Contains(body, []byte(l.sc.want)) {
			return 0, 0, fmt.Errorf("answer without %s: %.200s", l.sc.want, body)
		}
		return time.Since(start), 0, nil
	}

	// A stream: note when the first event arrives, and check that the last
	// one is [DONE], the only sign a stream was not cut short.
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	done := false
	for sc.Scan() {
		line := sc.Bytes()
		if !bytes.HasPrefix(line, []byte("data:")) {
			continue
		}
		if ttfb == 0 {
			ttfb = time.Since(start)
		}
		done = bytes.Equal(bytes.TrimSpace(line[len("data:"):]), []byte("[DONE]"))
	}
	if err := sc.Err(); err != nil {
		return 0, 0, err
	}
	if !done {
		return 0, 0, errors.New("stream did not end with data: [DONE]")
	}
	return time.Since(start), ttfb, nil
}

// summarize merges the workers' stats into one result.
func summarize(stats []workerStats, elapsed time.Duration) result {
	var latency, ttfb []time.Duration
	var res result
	for _, ws := range stats {
		latency = append(latency, ws.latency...)
		ttfb = append(ttfb, ws.ttfb...)
		res.Errors += ws.errors
		if res.FirstError == "" && ws.firstErr != nil {
			res.FirstError = ws.firstErr.Error()
		}
	}
	slices.Sort(latency)
	slices.Sort(ttfb)
	res.Seconds = elapsed.Seconds()
	res.Requests = len(latency) + res.Errors
	res.RPS = float64(len(latency)) / elapsed.Seconds()
	res.P50us = percentile(latency, 50).Microseconds()
	res.P90us = percentile(latency, 90).Microseconds()
	res.P99us = percentile(latency, 99).Microseconds()
	res.TTFBP50us = percentile(ttfb, 50).Microseconds()
	res.TTFBP99us = percentile(ttfb, 99).Microseconds()
	return res
}

// percentile returns the nearest-rank p-th percentile of sorted values, 0
// when there are none.
func percentile(sorted []time.Duration, p int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := (len(sorted)*p + 99) / 100 // ceil(len*p/100), 1-based
	return sorted[max(rank, 1)-1]
}
