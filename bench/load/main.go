// Command load is the closed-loop HTTP load generator of the gateway's
// benchmark (see bench/README.md): a fixed number of workers each send one
// fixed OpenAI request after another over a kept-alive connection, for a fixed
// time or a fixed number of requests, and it prints one JSON line with the
// throughput, the latency percentiles and the number of failed requests.
// Given the server's process id it also reports the server's own CPU time per
// request and its peak resident memory over the measurement, read from /proc.
//
// Usage:
//
//	load -url http://127.0.0.1:19001/v1 -name bare -scenario stream -duration 5s -concurrency 50 -pid 1234
//	load -url ... -scenario big -requests 8 -concurrency 8 -pid 1234
//	load -url ... -scenario slow -hold -concurrency 1000 -pid 1234
//
// Scenarios: chat (an unstreamed chat completion), stream (a streamed one,
// whose time to the first SSE data line is also measured and whose end must be
// "data: [DONE]"), embeddings, big (an unstreamed chat completion without
// max_tokens, as long as the provider makes it), big-stream (a streamed one
// of up to 230,000 chunks, about 50 MB) and slow (a stream, for -hold). A request fails
// when it gets a transport error, a status other than 200, or a body that is
// not the expected answer. Only the requests of the measured window count
// for the figures: a short warm-up first opens the connections and warms both
// ends, so a measurement does not include TCP handshakes or cold caches. The
// warm-up's requests are reported apart (warmup_requests), since a server
// that records every call records those too.
//
// With -hold, the workers instead each open one stream, wait until all have
// their first event, and keep them open while the server's resident memory
// is read: the memory a stream holds while it waits for its upstream.
//
// With -target, given once per server instead of -url, -key and -pid, it
// drives several servers in turn, a -slice (1 s) at a time each, until each
// has had -duration, and prints one line per server. A machine shared with
// other work runs faster or slower from one second to the next: servers
// measured in short slices side by side see the same machine, so the
// ratios of their figures say what the servers cost, not when each ran.
//
//	load -target name=bare,url=http://127.0.0.1:19110/v1,pid=1234 \
//	     -target name=basic,url=http://127.0.0.1:19112/v1,key=sk-bench,pid=1235 \
//	     -scenario stream -duration 8s -slice 1s
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
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
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

// The messages are what a typical SDK sends, about 300 bytes for the chat.
// Streams do not ask for stream_options.include_usage, as most clients do
// not: the gateway then asks the upstream for usage and removes the usage
// chunk again, and that work is part of what is measured.
const messages = `"messages":[{"role":"system","content":"You are a helpful assistant. Answer briefly."},` +
	`{"role":"user","content":"Summarise in one sentence why a gateway in front of several LLM providers helps a team that uses many models."}]`

var scenarios = map[string]scenario{
	"chat": {
		path: "/chat/completions",
		body: `{"model":"bench",` + messages + `,"temperature":0.2,"max_tokens":64}`,
		want: `"choices"`,
	},
	"stream": {
		path:   "/chat/completions",
		body:   `{"model":"bench",` + messages + `,"temperature":0.2,"max_tokens":64,"stream":true}`,
		stream: true,
	},
	"embeddings": {
		path: "/embeddings",
		body: `{"model":"bench","input":"A gateway in front of several LLM providers gives a team one endpoint, one set of keys and one usage record."}`,
		want: `"embedding"`,
	},
	// The provider's reply has as many chunks as it is told to make
	// (mockllm -chunks), unless max_tokens lowers it: big takes them all,
	// big-stream 230,000 (about 50 MB of events).
	"big": {
		path: "/chat/completions",
		body: `{"model":"bench",` + messages + `}`,
		want: `"choices"`,
	},
	"big-stream": {
		path:   "/chat/completions",
		body:   `{"model":"bench",` + messages + `,"max_tokens":230000,"stream":true}`,
		stream: true,
	},
	"slow": {
		path:   "/chat/completions",
		body:   `{"model":"bench",` + messages + `,"stream":true}`,
		stream: true,
	},
}

// result is the JSON line printed for one measurement. Latencies are in
// microseconds; TTFB fields are set for streams only, server fields with
// -pid only.
type result struct {
	Name           string  `json:"name"`
	Test           string  `json:"test,omitempty"`
	Scenario       string  `json:"scenario"`
	Mode           string  `json:"mode"`
	Round          int     `json:"round"`
	Concurrency    int     `json:"concurrency"`
	Seconds        float64 `json:"seconds"`
	Requests       int     `json:"requests"`
	Errors         int     `json:"errors"`
	WarmupRequests int     `json:"warmup_requests"`
	RPS            float64 `json:"rps"`
	P50us          int64   `json:"p50_us"`
	P90us          int64   `json:"p90_us"`
	P99us          int64   `json:"p99_us"`
	TTFBP50us      int64   `json:"ttfb_p50_us,omitempty"`
	TTFBP99us      int64   `json:"ttfb_p99_us,omitempty"`
	// TTFT is the time to the first data line with content (text), which
	// the first one, carrying only the role, may precede.
	TTFTP50us int64 `json:"ttft_p50_us,omitempty"`
	TTFTP99us int64 `json:"ttft_p99_us,omitempty"`
	// BytesPerRequest is the mean size of an answer's body.
	BytesPerRequest int64 `json:"bytes_per_request,omitempty"`
	// CPUusPerRequest is the server's user+system CPU time over the
	// measurement divided by the requests completed in it.
	CPUusPerRequest float64 `json:"cpu_us_per_request,omitempty"`
	CPUSeconds      float64 `json:"cpu_seconds,omitempty"`
	// PeakRSSKiB is the server's VmHWM over the measurement (reset when it
	// starts), IdleRSSKiB its VmRSS just before.
	PeakRSSKiB int64 `json:"peak_rss_kib,omitempty"`
	IdleRSSKiB int64 `json:"idle_rss_kib,omitempty"`
	// With -hold: the server's VmRSS with every stream open, and what that
	// adds per stream over IdleRSSKiB.
	HoldRSSKiB   int64   `json:"hold_rss_kib,omitempty"`
	KiBPerStream float64 `json:"kib_per_stream,omitempty"`
	FirstError   string  `json:"first_error,omitempty"`
	// Slices is how many turns a server driven with others (-target) had.
	Slices int `json:"slices,omitempty"`
}

// workerStats is what one worker collects; each worker owns its own so the
// hot loop takes no lock, and they are merged once at the end.
type workerStats struct {
	latency  []time.Duration
	ttfb     []time.Duration
	ttft     []time.Duration
	bytes    int64
	errors   int
	firstErr error
}

func main() {
	url := flag.String("url", "", "API base URL, e.g. http://127.0.0.1:19001/v1")
	key := flag.String("key", "sk-bench", "client key, sent as Authorization: Bearer")
	scenarioName := flag.String("scenario", "chat", "chat, stream, embeddings, big, big-stream or slow")
	duration := flag.Duration("duration", 5*time.Second, "how long to measure (each -target)")
	requests := flag.Int("requests", 0, "send this many requests instead (spread over the workers), bounded by -duration")
	warmup := flag.Duration("warmup", 500*time.Millisecond, "load sent before measuring, not counted (to each -target)")
	concurrency := flag.Int("concurrency", 50, "workers, each with one request in flight")
	name := flag.String("name", "", "name of the target in the output (default: the URL)")
	round := flag.Int("round", 0, "round number, copied to the output")
	test := flag.String("test", "", "what the measurement is part of (load, ttfb, memory, big), copied to the output")
	pid := flag.Int("pid", 0, "server process whose CPU time and memory to report")
	hold := flag.Bool("hold", false, "open one stream per worker, keep them all open and report the server's memory")
	timeout := flag.Duration("timeout", 30*time.Second, "longest a single request may take")
	stagger := flag.Duration("stagger", 0, "spread the workers' first requests over this long, so that requests of one length do not all start together")
	var targets targetFlags
	flag.Var(&targets, "target", "name=NAME,url=URL[,key=KEY][,pid=PID]: a server to drive in turn with the others, instead of -url, -key and -pid (repeat it)")
	slice := flag.Duration("slice", time.Second, "with -target: how long each server is driven before the next one's turn")
	flag.Parse()

	sc, ok := scenarios[*scenarioName]
	single := *url != ""
	if single == (len(targets) > 0) || !ok || *concurrency < 1 || *duration <= 0 || *requests < 0 || flag.NArg() > 0 ||
		(*hold && (!single || !sc.stream || *pid == 0)) || (!single && (*requests > 0 || *slice <= 0)) {
		fmt.Fprintln(os.Stderr, "load: want -url or -target (not both), a -scenario of chat, stream, embeddings, big, big-stream or slow, "+
			"-concurrency >= 1, -duration > 0, for -hold a -url, a streamed scenario and -pid, and for -target a -slice > 0 and no -requests")
		flag.Usage()
		os.Exit(2)
	}
	if single {
		if *name == "" {
			*name = *url
		}
		targets = targetFlags{{name: *name, url: *url, key: *key, pid: *pid}}
	}
	loaders := make([]*loader, len(targets))
	for i, t := range targets {
		if t.key == "" {
			t.key = *key
		}
		loaders[i] = newLoader(t, sc, *concurrency, *timeout, *stagger)
	}

	var results []result
	var err error
	if single {
		var res result
		if *hold {
			res, err = loaders[0].hold(*concurrency)
		} else {
			res, err = loaders[0].measure(*concurrency, *duration, *requests, *warmup)
		}
		results = []result{res}
	} else {
		results, err = sliced(loaders, *concurrency, *duration, *slice, *warmup)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "load:", err)
		os.Exit(1)
	}
	for i, res := range results {
		res.Name, res.Test, res.Scenario, res.Round, res.Concurrency = targets[i].name, *test, *scenarioName, *round, *concurrency
		line, err := json.Marshal(res)
		if err != nil {
			fmt.Fprintln(os.Stderr, "load:", err)
			os.Exit(1)
		}
		fmt.Println(string(line))
	}
}

// targetSpec is one server to drive: -url, -key and -pid, or one -target.
type targetSpec struct {
	name, url, key string
	pid            int
}

// targetFlags collects the -target flags.
type targetFlags []*targetSpec

func (f *targetFlags) String() string { return fmt.Sprint(len(*f), " targets") }

func (f *targetFlags) Set(v string) error {
	t := &targetSpec{}
	for field := range strings.SplitSeq(v, ",") {
		k, val, ok := strings.Cut(field, "=")
		if !ok {
			return fmt.Errorf("%q is not key=value", field)
		}
		switch k {
		case "name":
			t.name = val
		case "url":
			t.url = val
		case "key":
			t.key = val
		case "pid":
			n, err := strconv.Atoi(val)
			if err != nil || n <= 0 {
				return fmt.Errorf("pid %q is not a process id", val)
			}
			t.pid = n
		default:
			return fmt.Errorf("unknown field %q (want name, url, key, pid)", k)
		}
	}
	if t.name == "" || t.url == "" {
		return errors.New("a target needs name= and url=")
	}
	*f = append(*f, t)
	return nil
}

// loader sends one scenario's request to one URL, and reads its server's
// figures.
type loader struct {
	client  *http.Client
	url     string
	key     string
	sc      scenario
	timeout time.Duration
	stagger time.Duration
	srv     server
}

func newLoader(t *targetSpec, sc scenario, concurrency int, timeout, stagger time.Duration) *loader {
	client := &http.Client{
		Transport: &http.Transport{
			// Never a proxy from the environment: the traffic stays on the
			// address given.
			Proxy: nil,
			// One idle connection per worker, so that every request reuses
			// one and no measurement pays for a handshake.
			MaxIdleConns:        concurrency,
			MaxIdleConnsPerHost: concurrency,
			// Neither side would compress; asking would only add work to
			// the baseline and the gateway unevenly.
			DisableCompression: true,
		},
	}
	return &loader{client: client, url: strings.TrimSuffix(t.url, "/") + sc.path, key: t.key, sc: sc,
		timeout: timeout, stagger: stagger, srv: server{pid: t.pid}}
}

// measure runs the warm-up and then the measured load, reading the server's
// CPU time and peak memory around the latter.
func (l *loader) measure(n int, d time.Duration, requests int, warmup time.Duration) (result, error) {
	var m measurement
	m.warm(l, n, warmup)
	if err := m.add(l, n, d, requests); err != nil {
		return result{}, err
	}
	return m.result(l), nil
}

// sliced drives the loaders' servers in turn, each for slice at a time (the
// last one shorter), until each has been driven for d, after a warm-up of
// each. Only one server has requests in flight at a time: a slice ends
// once its last request has.
func sliced(ls []*loader, n int, d, slice, warmup time.Duration) ([]result, error) {
	ms := make([]measurement, len(ls))
	for i, l := range ls {
		ms[i].warm(l, n, warmup)
	}
	for done := time.Duration(0); done < d; done += slice {
		for i, l := range ls {
			if err := ms[i].add(l, n, min(slice, d-done), 0); err != nil {
				return nil, err
			}
		}
	}
	results := make([]result, len(ls))
	for i, l := range ls {
		results[i] = ms[i].result(l)
		results[i].Slices = ms[i].slices
	}
	return results, nil
}

// measurement adds up the measured windows of one server.
type measurement struct {
	stats   []workerStats
	elapsed time.Duration
	slices  int
	warmup  int
	cpu     float64 // seconds
	idle    int64   // the RSS before the first window, KiB
	peak    int64   // the highest peak RSS of the windows, KiB
}

// warm sends load for d that is not counted, but for its requests.
func (m *measurement) warm(l *loader, n int, d time.Duration) {
	if d <= 0 {
		return
	}
	for _, ws := range l.run(n, d, 0) {
		m.warmup += len(ws.latency) + ws.errors
	}
}

// add measures one window of d (or of requests), reading the server's CPU
// time and peak memory around it.
func (m *measurement) add(l *loader, n int, d time.Duration, requests int) error {
	before, err := l.srv.begin()
	if err != nil {
		return err
	}
	start := time.Now()
	stats := l.run(n, d, requests)
	m.elapsed += time.Since(start)
	after, err := l.srv.end()
	if err != nil {
		return err
	}
	if m.slices == 0 {
		m.idle = before.rss
	}
	m.slices++
	m.stats = append(m.stats, stats...)
	m.cpu += after.cpu - before.cpu
	m.peak = max(m.peak, after.hwm)
	return nil
}

func (m *measurement) result(l *loader) result {
	res := result{Mode: "load", WarmupRequests: m.warmup}
	summarize(&res, m.stats, m.elapsed)
	if l.srv.pid != 0 {
		res.IdleRSSKiB, res.PeakRSSKiB, res.CPUSeconds = m.idle, m.peak, m.cpu
		if ok := res.Requests - res.Errors; ok > 0 {
			res.CPUusPerRequest = res.CPUSeconds * 1e6 / float64(ok)
		}
	}
	return res
}

// run keeps n requests in flight until d has passed, or until requests have
// been sent when it is more than 0, and returns each worker's stats.
// Requests under way at the deadline are let finish and counted, and the
// caller divides by the time until the last one ended.
func (l *loader) run(n int, d time.Duration, requests int) []workerStats {
	deadline := time.Now().Add(d)
	stats := make([]workerStats, n)
	var left atomic.Int64
	left.Store(int64(requests))
	var wg sync.WaitGroup
	for i := range stats {
		wg.Go(func() {
			ws := &stats[i]
			time.Sleep(time.Duration(i) * l.stagger / time.Duration(n))
			for time.Now().Before(deadline) {
				if requests > 0 && left.Add(-1) < 0 {
					return
				}
				total, ttfb, ttft, size, err := l.do()
				if err != nil {
					ws.errors++
					if ws.firstErr == nil {
						ws.firstErr = err
					}
					continue
				}
				ws.latency = append(ws.latency, total)
				ws.bytes += size
				if l.sc.stream {
					ws.ttfb = append(ws.ttfb, ttfb)
					ws.ttft = append(ws.ttft, ttft)
				}
			}
		})
	}
	wg.Wait()
	return stats
}

// hold opens n streams, waits until each has its first event, and reads the
// server's resident memory while they are all open. A few streams opened
// and closed first warm the server, so that the idle figure is a server
// that has served streams, not one that has just started.
func (l *loader) hold(n int) (result, error) {
	srv := l.srv
	res := result{Mode: "hold"}
	for range min(n, 10) {
		release := make(chan struct{})
		close(release)
		if err := l.holdOne(release, func() {}); err != nil {
			return res, fmt.Errorf("warm-up stream: %w", err)
		}
		res.WarmupRequests++
	}
	// The warm-up streams were cut, so the server counts their tokens,
	// loading its tokenizer once: wait until its memory stops growing.
	idle, err := settled(srv)
	if err != nil {
		return res, err
	}

	release := make(chan struct{})
	var ready, done sync.WaitGroup
	ready.Add(n)
	var mu sync.Mutex
	start := time.Now()
	for range n {
		done.Go(func() {
			var once sync.Once
			signal := func() { once.Do(ready.Done) }
			err := l.holdOne(release, signal)
			signal() // a stream that failed before its first event
			if err != nil {
				mu.Lock()
				res.Errors++
				if res.FirstError == "" {
					res.FirstError = err.Error()
				}
				mu.Unlock()
			}
		})
	}
	ready.Wait()
	res.Seconds = time.Since(start).Seconds()
	// Let the server settle (its goroutines parked, buffers allocated),
	// then take the highest of a few readings.
	var during int64
	for range 5 {
		time.Sleep(200 * time.Millisecond)
		s, err := srv.read()
		if err != nil {
			close(release)
			return res, err
		}
		during = max(during, s.rss)
	}
	close(release)
	done.Wait()
	res.Requests = n
	res.IdleRSSKiB, res.HoldRSSKiB = idle.rss, during
	res.KiBPerStream = float64(during-idle.rss) / float64(n)
	return res, nil
}

// settled reads the server's memory once a second until three readings in
// a row are within 1% of each other (at most 20 s), and returns the last.
func settled(srv server) (sample, error) {
	last, err := srv.read()
	stable := 0
	for deadline := time.Now().Add(20 * time.Second); err == nil && stable < 2 && time.Now().Before(deadline); {
		time.Sleep(time.Second)
		var s sample
		if s, err = srv.read(); err != nil {
			break
		}
		if diff := s.rss - last.rss; diff*100 < last.rss && -diff*100 < last.rss {
			stable++
		} else {
			stable = 0
		}
		last = s
	}
	return last, err
}

// holdOne opens one stream, calls ready after its first event and closes it
// when release is closed. A stream that ends before is an error: the
// provider is meant to be slower than the measurement.
func (l *loader) holdOne(release <-chan struct{}, ready func()) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	resp, err := l.send(ctx)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return fmt.Errorf("stream ended before it was released: %w", err)
		}
		if bytes.HasPrefix(line, []byte("data:")) {
			break
		}
	}
	ready()
	<-release
	return nil
}

// send sends the scenario's request and checks the status.
func (l *loader) send(ctx context.Context) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, l.url, strings.NewReader(l.sc.body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+l.key)
	req.Header.Set("Content-Type", "application/json")
	if l.sc.stream {
		req.Header.Set("Accept", "text/event-stream")
	}
	resp, err := l.client.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		resp.Body.Close()
		return nil, fmt.Errorf("status %d: %s", resp.StatusCode, bytes.TrimSpace(msg))
	}
	return resp, nil
}

// do sends one request and reads the whole answer. It returns the time
// until the answer ended and, for a stream, until its first data line and
// its first content, and the answer's size.
func (l *loader) do() (total, ttfb, ttft time.Duration, size int64, err error) {
	// A request that hangs fails instead of stalling the whole run.
	ctx, cancel := context.WithTimeout(context.Background(), l.timeout)
	defer cancel()
	start := time.Now()
	resp, err := l.send(ctx)
	if err != nil {
		return 0, 0, 0, 0, err
	}
	defer resp.Body.Close()

	if !l.sc.stream {
		// Only the first KiB is kept to check the answer: a 50 MB answer is
		// counted, not held.
		head := make([]byte, 0, 1024)
		w := &headWriter{head: head}
		if _, err := io.Copy(w, resp.Body); err != nil {
			return 0, 0, 0, 0, err
		}
		if !bytes.Contains(w.head, []byte(l.sc.want)) {
			return 0, 0, 0, 0, fmt.Errorf("answer without %s: %.200s", l.sc.want, w.head)
		}
		return time.Since(start), 0, 0, w.n, nil
	}

	// A stream: note when the first event arrives, and check that the last
	// one is [DONE], the only sign a stream was not cut short.
	br := bufio.NewReaderSize(resp.Body, 16<<10)
	done := false
	for {
		line, err := br.ReadSlice('\n')
		size += int64(len(line))
		if errors.Is(err, bufio.ErrBufferFull) {
			continue // a line longer than the buffer: not one to look at
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return 0, 0, 0, 0, err
		}
		if !bytes.HasPrefix(line, []byte("data:")) {
			continue
		}
		if ttfb == 0 {
			ttfb = time.Since(start)
		}
		if ttft == 0 && hasContent(line) {
			ttft = time.Since(start)
		}
		done = bytes.Equal(bytes.TrimSpace(line[len("data:"):]), []byte("[DONE]"))
	}
	if !done {
		return 0, 0, 0, 0, errors.New("stream did not end with data: [DONE]")
	}
	return time.Since(start), ttfb, ttft, size, nil
}

// hasContent reports whether an OpenAI chat stream event carries text: a
// "content" that is not empty.
func hasContent(line []byte) bool {
	const field = `"content":"`
	i := bytes.Index(line, []byte(field))
	return i >= 0 && i+len(field) < len(line) && line[i+len(field)] != '"'
}

// headWriter counts what is written to it and keeps its first bytes.
type headWriter struct {
	head []byte
	n    int64
}

func (w *headWriter) Write(p []byte) (int, error) {
	if room := cap(w.head) - len(w.head); room > 0 {
		w.head = append(w.head, p[:min(room, len(p))]...)
	}
	w.n += int64(len(p))
	return len(p), nil
}

// summarize merges the workers' stats into res.
func summarize(res *result, stats []workerStats, elapsed time.Duration) {
	var latency, ttfb, ttft []time.Duration
	var size int64
	for _, ws := range stats {
		latency = append(latency, ws.latency...)
		ttfb = append(ttfb, ws.ttfb...)
		ttft = append(ttft, ws.ttft...)
		size += ws.bytes
		res.Errors += ws.errors
		if res.FirstError == "" && ws.firstErr != nil {
			res.FirstError = ws.firstErr.Error()
		}
	}
	slices.Sort(latency)
	slices.Sort(ttfb)
	slices.Sort(ttft)
	res.Seconds = elapsed.Seconds()
	res.Requests = len(latency) + res.Errors
	res.RPS = float64(len(latency)) / elapsed.Seconds()
	res.P50us = percentile(latency, 50).Microseconds()
	res.P90us = percentile(latency, 90).Microseconds()
	res.P99us = percentile(latency, 99).Microseconds()
	res.TTFBP50us = percentile(ttfb, 50).Microseconds()
	res.TTFBP99us = percentile(ttfb, 99).Microseconds()
	res.TTFTP50us = percentile(ttft, 50).Microseconds()
	res.TTFTP99us = percentile(ttft, 99).Microseconds()
	if len(latency) > 0 {
		res.BytesPerRequest = size / int64(len(latency))
	}
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

// server reads a process's CPU time and memory from /proc (Linux).
type server struct{ pid int }

type sample struct {
	cpu      float64 // user+system seconds
	rss, hwm int64   // KiB
}

// userHZ is the unit of the CPU times in /proc/<pid>/stat: USER_HZ, which
// Linux fixes at 100 for every architecture it exposes to user space.
const userHZ = 100

// begin resets the process's peak RSS (VmHWM) to its current RSS, so that
// the peak read by end is the measurement's own, and samples it.
func (s server) begin() (sample, error) {
	if s.pid == 0 {
		return sample{}, nil
	}
	// "5" resets the peak RSS; allowed on one's own processes.
	if err := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", s.pid), []byte("5"), 0); err != nil {
		return sample{}, fmt.Errorf("resetting the peak RSS of process %d: %w", s.pid, err)
	}
	return s.read()
}

func (s server) end() (sample, error) {
	if s.pid == 0 {
		return sample{}, nil
	}
	return s.read()
}

func (s server) read() (sample, error) {
	var smp sample
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", s.pid))
	if err != nil {
		return smp, fmt.Errorf("reading the CPU time of process %d: %w", s.pid, err)
	}
	// The command name, field 2, is in parentheses and may hold spaces:
	// count the fields from after its closing one. utime and stime are
	// fields 14 and 15, the 12th and 13th after it.
	i := bytes.LastIndexByte(stat, ')')
	fields := strings.Fields(string(stat[i+1:]))
	if i < 0 || len(fields) < 13 {
		return smp, fmt.Errorf("process %d: unexpected /proc stat %q", s.pid, stat)
	}
	utime, err1 := strconv.ParseInt(fields[11], 10, 64)
	stime, err2 := strconv.ParseInt(fields[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return smp, fmt.Errorf("process %d: /proc stat: %w", s.pid, err)
	}
	smp.cpu = float64(utime+stime) / userHZ

	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.pid))
	if err != nil {
		return smp, fmt.Errorf("reading the memory of process %d: %w", s.pid, err)
	}
	for line := range strings.Lines(string(status)) {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		switch f[0] {
		case "VmRSS:":
			smp.rss, _ = strconv.ParseInt(f[1], 10, 64)
		case "VmHWM:":
			smp.hwm, _ = strconv.ParseInt(f[1], 10, 64)
		}
	}
	return smp, nil
}
