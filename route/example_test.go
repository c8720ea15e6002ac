package route_test

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"

	"github.com/caddyserver/caddy/v2"

	"github.com/llmoneapi/llmoneapi/llm"
	"github.com/llmoneapi/llmoneapi/route"
	"github.com/llmoneapi/llmoneapi/sse"
	"github.com/llmoneapi/llmoneapi/wire"
	"github.com/llmoneapi/llmoneapi/wire/openai"
)

// mapCatalog is a Catalog over a map of model names.
type mapCatalog map[string]*route.Model

func (c mapCatalog) Lookup(name string) *route.Model { return c[name] }

func (c mapCatalog) List() []*route.Model {
	names := make([]string, 0, len(c))
	for name := range c {
		names = append(names, name)
	}
	slices.Sort(names) // List must be in a stable order
	models := make([]*route.Model, len(names))
	for i, name := range names {
		models[i] = c[name]
	}
	return models
}

// A Catalog finds models by name; a nil Model lets the next catalog answer.
func ExampleCatalog() {
	var c route.Catalog = mapCatalog{
		"gpt-4o":      {Name: "gpt-4o"},
		"gpt-4o-mini": {Name: "gpt-4o-mini"},
	}
	for _, m := range c.List() {
		fmt.Println(m.Name)
	}
	fmt.Println(c.Lookup("claude") == nil)
	// Output:
	// gpt-4o
	// gpt-4o-mini
	// true
}

// heaviest is a Policy that always picks the candidate of the largest weight.
type heaviest struct{}

func (heaviest) Select(candidates []*route.Upstream, _ *route.PolicyState, _ *http.Request) *route.Upstream {
	return slices.MaxFunc(candidates, func(a, b *route.Upstream) int { return a.Weight - b.Weight })
}

// A Policy picks one of the upstreams that are available and not yet tried;
// the route handler never gives it an empty list.
func ExamplePolicy() {
	var p route.Policy = heaviest{}
	candidates := []*route.Upstream{
		{URL: "https://a.example/v1", Weight: 1},
		{URL: "https://b.example/v1", Weight: 3},
	}
	fmt.Println(p.Select(candidates, new(route.PolicyState), nil).URL)
	// b.example failed: the next try gets the remaining candidates.
	fmt.Println(p.Select(candidates[:1], new(route.PolicyState), nil).URL)
	// Output:
	// https://b.example/v1
	// https://a.example/v1
}

// Parrot is a Provider for a made-up upstream API, "Parrot": POST
// <base>/speak with its key in X-Parrot-Key and {"model","prompt","stream"},
// answered by {"said","words_in","words_out"} (a stream is one such JSON
// object per line, the last with "done": true) or by {"complaint"} with an
// error status. It translates OpenAI chat clients to Parrot and back.
type Parrot struct{}

func init() { caddy.RegisterModule(Parrot{}) }

func (Parrot) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "llm.route.providers.parrot", New: func() caddy.Module { return new(Parrot) }}
}

type parrotSaid struct {
	Said     string `json:"said"`
	WordsIn  int64  `json:"words_in"`
	WordsOut int64  `json:"words_out"`
	Done     bool   `json:"done"`
}

func (p parrotSaid) usage() *llm.Usage {
	return &llm.Usage{PromptTokens: p.WordsIn, CompletionTokens: p.WordsOut, TotalTokens: p.WordsIn + p.WordsOut}
}

// NewRequest sends Parrot the last message's text, with the upstream's own
// key: nothing of the client's request goes along but what x carries.
func (Parrot) NewRequest(ctx context.Context, x *route.Exchange) (*http.Request, error) {
	if x.Endpoint != llm.EndpointChat {
		return nil, fmt.Errorf("parrot serves chat completions only, not %s", x.Endpoint)
	}
	chat, err := openai.DecodeRequest(x.Request.Body)
	if err != nil || len(chat.Messages) == 0 {
		return nil, cmp.Or(err, fmt.Errorf("parrot needs a message"))
	}
	var prompt strings.Builder
	for _, part := range chat.Messages[len(chat.Messages)-1].Content {
		prompt.WriteString(part.Text)
	}
	body, _ := json.Marshal(map[string]any{"model": x.Model, "prompt": prompt.String(), "stream": x.Request.Stream})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, x.Upstream.BaseURL()+"/speak", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("X-Parrot-Key", x.Upstream.Key())
	return req, nil
}

// Response turns Parrot's answer into an OpenAI chat completion.
func (Parrot) Response(x *route.Exchange, body []byte) ([]byte, *llm.Usage, error) {
	var said parrotSaid
	if err := json.Unmarshal(body, &said); err != nil {
		return nil, nil, fmt.Errorf("parrot: %w", err)
	}
	out, err := openai.EncodeResponse(&wire.Response{Model: x.Model, FinishReason: wire.FinishStop, Usage: said.usage(),
		Content: []wire.Part{{Type: wire.PartText, Text: said.Said}}})
	return out, said.usage(), err
}

// Stream turns Parrot's lines into OpenAI chunks, one event per line.
func (Parrot) Stream(x *route.Exchange, body io.Reader) route.Stream {
	return &parrotStream{lines: bufio.NewScanner(body), enc: openai.NewStreamEncoder(x.Request.IncludeUsage)}
}

// Error keeps Parrot's complaint and status; the route handler decides
// whether to try another upstream.
func (Parrot) Error(_ *route.Exchange, status int, body []byte) *llm.Error {
	var e struct{ Complaint string }
	_ = json.Unmarshal(body, &e)
	return openai.ToLLM(&wire.Error{Status: status, Kind: wire.KindForStatus(status), Message: cmp.Or(e.Complaint, http.StatusText(status))})
}

type parrotStream struct {
	lines *bufio.Scanner
	enc   *openai.StreamEncoder
	buf   []byte
	done  bool
}

func (s *parrotStream) Next() (route.StreamEvent, error) {
	if s.done {
		return route.StreamEvent{}, io.EOF
	}
	if !s.lines.Scan() {
		// Parrot ended without its "done" line: the stream was cut.
		return route.StreamEvent{}, cmp.Or(s.lines.Err(), io.ErrUnexpectedEOF)
	}
	var said parrotSaid
	if err := json.Unmarshal(s.lines.Bytes(), &said); err != nil {
		return route.StreamEvent{}, fmt.Errorf("parrot: %w", err)
	}
	if !said.Done {
		s.buf = s.enc.Encode(s.buf[:0], &wire.Event{Type: wire.EventTextDelta, Text: said.Said})
		return route.StreamEvent{Data: s.buf, Content: true}, nil
	}
	s.done = true
	s.buf = s.enc.Encode(s.buf[:0], &wire.Event{Type: wire.EventFinish, FinishReason: wire.FinishStop})
	s.buf = s.enc.Encode(s.buf, &wire.Event{Type: wire.EventUsage, Usage: said.usage()})
	s.buf = s.enc.End(s.buf) // the usage chunk if the client asked, and [DONE]
	return route.StreamEvent{Data: s.buf, Usage: said.usage(), Content: true}, nil
}

// A Provider builds the upstream request, turns the upstream's answer (whole
// or streamed) into the client's API and reads the usage, and turns the
// upstream's errors into the client's. Here a made-up upstream answers
// through an httptest server, and the calls are made as llm_route makes them.
func ExampleProvider() {
	parrot := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			Prompt string
			Stream bool
		}
		_ = json.NewDecoder(r.Body).Decode(&in)
		switch {
		case r.Header.Get("X-Parrot-Key") != "sk-parrot":
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(w, `{"complaint":"who are you?"}`)
		case in.Stream:
			for _, word := range strings.Fields(in.Prompt) {
				fmt.Fprintf(w, `{"said":"%s "}`+"\n", word)
			}
			fmt.Fprint(w, `{"done":true,"words_in":2,"words_out":2}`+"\n")
		default:
			fmt.Fprintf(w, `{"said":%q,"words_in":2,"words_out":2}`, in.Prompt)
		}
	}))
	defer parrot.Close()

	// A catalog provisions its models, which loads each upstream's provider.
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	model := &route.Model{Name: "polly", Upstreams: []*route.Upstream{{
		ProviderRaw: json.RawMessage(`{"name":"parrot"}`), URL: parrot.URL, APIKey: "sk-parrot",
	}}}
	if err := model.Provision(ctx); err != nil {
		fmt.Println(err)
		return
	}
	defer model.Cleanup()
	u := model.Upstreams[0]
	p, name := u.Provider()

	call := func(body string) (*route.Exchange, *http.Response) {
		req, _ := llm.ParseRequest([]byte(body))
		x := &route.Exchange{Endpoint: llm.EndpointChat, Request: req, Upstream: u, Model: u.UpstreamModel()}
		upReq, err := p.NewRequest(context.Background(), x)
		if err != nil {
			log.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(upReq)
		if err != nil {
			log.Fatal(err)
		}
		return x, resp
	}

	x, resp := call(`{"model":"polly","messages":[{"role":"user","content":"hello world"}]}`)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	out, usage, _ := p.Response(x, body)
	answer, _ := openai.DecodeResponse(out)
	fmt.Printf("%s: %q, %d tokens\n", name, answer.Text(), usage.TotalTokens)

	x, resp = call(`{"model":"polly","stream":true,"messages":[{"role":"user","content":"pretty bird"}]}`)
	stream := p.Stream(x, resp.Body)
	var dec openai.StreamDecoder
	for {
		ev, err := stream.Next()
		if err != nil {
			fmt.Println("end:", err)
			break
		}
		events := sse.NewReader(bytes.NewReader(ev.Data), 0)
		for e, err := events.Next(); err == nil; e, err = events.Next() {
			decoded, _ := dec.Decode(nil, e.Data)
			for _, d := range decoded {
				if d.Type == wire.EventTextDelta {
					fmt.Printf("chunk %q\n", d.Text)
				}
			}
		}
		if ev.Usage != nil {
			fmt.Println("usage:", ev.Usage.TotalTokens, "tokens")
		}
	}
	resp.Body.Close()

	e := p.Error(x, http.StatusUnauthorized, []byte(`{"complaint":"who are you?"}`))
	fmt.Println(e.Status, e.Message)
	// Output:
	// parrot: "hello world", 4 tokens
	// chunk "pretty "
	// chunk "bird "
	// usage: 4 tokens
	// end: EOF
	// 401 who are you?
}
