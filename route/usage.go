package route

import (
	"bytes"
	"encoding/json"
	"strings"
	"sync"

	"github.com/llmoneapi/llmoneapi/llm"
	"github.com/llmoneapi/llmoneapi/sse"
	"github.com/llmoneapi/llmoneapi/wire"
	"github.com/llmoneapi/llmoneapi/wire/anthropic"
	"github.com/llmoneapi/llmoneapi/wire/openai"
	"github.com/llmoneapi/llmoneapi/wire/responses"
	"github.com/llmoneapi/llmoneapi/wire/tokens"
)

// clientCodec reads a client API's requests, answers and streams, for
// counting.
type clientCodec struct {
	decodeRequest  func([]byte) (*wire.Request, error)
	decodeResponse func([]byte) (*wire.Response, error)
	newDecoder     func() streamDecoder
}

// streamDecoder reads one SSE event's data into canonical events.
type streamDecoder interface {
	Decode(dst []wire.Event, data []byte) ([]wire.Event, error)
}

// countedAPIs are the client APIs whose usage is counted from their wire
// format; completions and embeddings are read as plain text.
var countedAPIs = map[llm.Endpoint]clientCodec{
	llm.EndpointChat: {openai.DecodeRequest, openai.DecodeResponse, func() streamDecoder {
		return new(openai.StreamDecoder)
	}},
	llm.EndpointMessages: {anthropic.DecodeRequest, anthropic.DecodeResponse, func() streamDecoder {
		return new(anthropic.StreamDecoder)
	}},
	llm.EndpointResponses: {responses.DecodeRequest, responses.DecodeResponse, func() streamDecoder {
		return new(responses.StreamDecoder)
	}},
}

// Usage the upstream did not report is counted with wire/tokens in the
// upstream model's encoding: the prompt from the client's request (a chat's
// messages, system prompt and tools with the chat format's overheads; a
// completion's prompt or an embedding's input as plain text), the
// completion from the answer's text. It is counted after the client has
// its answer, and only when the upstream reported no usage, so neither the
// client nor a call with usage ever waits on the tokenizer.
//
// What a stream sent is kept as bytes (a copy per event, no parsing) up to
// keepMax; the text is read out of it only when it must be counted. A
// longer stream's count is scaled from the part kept by its total size, so
// memory stays flat however long the stream.

// keepMax bounds the bytes of a stream kept for counting.
const keepMax = 32 << 10

// keepSize is the capacity of a pooled keep buffer: most answers fit.
const keepSize = 4 << 10

var keepPool = sync.Pool{New: func() any { b := make([]byte, 0, keepSize); return &b }}

// sent is what a stream sent the client, for counting its usage.
type sent struct {
	buf   *[]byte
	total int
}

// add keeps a copy of data, within keepMax.
func (s *sent) add(data []byte) {
	s.total += len(data)
	if s.buf == nil {
		s.buf = keepPool.Get().(*[]byte)
	}
	if room := keepMax - len(*s.buf); room > 0 {
		*s.buf = append(*s.buf, data[:min(room, len(data))]...)
	}
}

// release gives the buffer back; the counts are gone with it.
func (s *sent) release() {
	if s.buf != nil && cap(*s.buf) <= keepMax*2 {
		*s.buf = (*s.buf)[:0]
		keepPool.Put(s.buf)
	}
	s.buf = nil
}

// completionTokens counts the answer text of the kept events, scaled to the
// whole stream when it was longer than what was kept.
func (s *sent) completionTokens(x *Exchange) int {
	if s.buf == nil || len(*s.buf) == 0 {
		return 0
	}
	kept := *s.buf
	n := tokens.Count(x.Model, streamText(x.Endpoint, kept))
	if s.total > len(kept) {
		n = int(int64(n) * int64(s.total) / int64(len(kept)))
	}
	return n
}

// streamText reads the answer's text (content, reasoning, tool calls) out
// of a stream in the client's API. A last event cut at keepMax is skipped.
func streamText(endpoint llm.Endpoint, stream []byte) string {
	var text strings.Builder
	events := sse.NewReader(bytes.NewReader(stream), 0)
	codec, ok := countedAPIs[endpoint]
	if !ok && endpoint != llm.EndpointCompletions {
		return ""
	}
	var dec streamDecoder
	if ok {
		dec = codec.newDecoder()
	}
	var evs []wire.Event
	for {
		ev, err := events.Next()
		if err != nil {
			break
		}
		if endpoint == llm.EndpointCompletions {
			var chunk struct {
				Choices []struct {
					Text string `json:"text"`
				} `json:"choices"`
			}
			if json.Unmarshal(ev.Data, &chunk) == nil {
				for _, c := range chunk.Choices {
					text.WriteString(c.Text)
				}
			}
			continue
		}
		evs, _ = dec.Decode(evs[:0], ev.Data)
		for _, e := range evs {
			switch e.Type {
			case wire.EventTextDelta, wire.EventReasoningDelta, wire.EventToolCallDelta:
				text.WriteString(e.Text)
			case wire.EventToolCallStart:
				text.WriteString(e.Name)
				text.WriteByte(' ')
			}
		}
	}
	return text.String()
}

// estimateAnswer records the usage of an unstreamed answer without one.
func estimateAnswer(call *llm.Call, t *try) {
	prompt := promptTokens(t.x)
	completion := answerTokens(t.x, t.body)
	call.Usage, call.UsageSource = counted(prompt, completion), llm.UsageEstimated
}

func counted(prompt, completion int) llm.Usage {
	return llm.Usage{PromptTokens: int64(prompt), CompletionTokens: int64(completion), TotalTokens: int64(prompt + completion)}
}

// settleStream records a relayed stream's usage once it ended: the
// upstream's own, marked partial when the stream did not finish (with the
// completion counted when the upstream had reported only its prompt), or
// else what was sent, counted: estimated for a finished stream, partial for
// a cut one, none when nothing was generated.
func settleStream(call *llm.Call, t *try, finished bool) {
	if call.UsageSource == llm.UsageUpstream {
		if !finished {
			call.UsageSource = llm.UsagePartial
			if call.Usage.CompletionTokens == 0 {
				call.Usage.CompletionTokens = int64(t.sent.completionTokens(t.x))
				call.Usage.TotalTokens = call.Usage.PromptTokens + call.Usage.CompletionTokens
			}
		}
		return
	}
	completion := t.sent.completionTokens(t.x)
	if completion == 0 {
		call.UsageSource = llm.UsageNone
		return
	}
	call.Usage, call.UsageSource = counted(promptTokens(t.x), completion), llm.UsagePartial
	if finished {
		call.UsageSource = llm.UsageEstimated
	}
}

// promptTokens estimates the prompt tokens of the client's request.
func promptTokens(x *Exchange) int {
	body := x.Request.Body
	if codec, ok := countedAPIs[x.Endpoint]; ok {
		req, err := codec.decodeRequest(body)
		if err != nil {
			return 0 // the upstream took it; nothing the gateway can count
		}
		return tokens.Prompt(x.Model, req)
	}
	var in struct {
		Prompt json.RawMessage `json:"prompt"`
		Input  json.RawMessage `json:"input"`
	}
	_ = json.Unmarshal(body, &in)
	n := 0
	for _, raw := range []json.RawMessage{in.Prompt, in.Input} {
		for _, s := range texts(raw) {
			n += tokens.Count(x.Model, s)
		}
	}
	return n
}

// texts reads a string or a list of strings; token-id arrays are not text
// and count nothing.
func texts(raw json.RawMessage) []string {
	var one string
	if json.Unmarshal(raw, &one) == nil {
		return []string{one}
	}
	var many []string
	_ = json.Unmarshal(raw, &many)
	return many
}

// answerTokens estimates the completion tokens of an unstreamed answer in
// the client's API.
func answerTokens(x *Exchange, body []byte) int {
	if codec, ok := countedAPIs[x.Endpoint]; ok {
		resp, err := codec.decodeResponse(body)
		if err != nil {
			return 0
		}
		return tokens.Completion(x.Model, resp)
	}
	switch x.Endpoint {
	case llm.EndpointCompletions:
		var resp struct {
			Choices []struct {
				Text string `json:"text"`
			} `json:"choices"`
		}
		_ = json.Unmarshal(body, &resp)
		n := 0
		for _, c := range resp.Choices {
			n += tokens.Count(x.Model, c.Text)
		}
		return n
	}
	return 0 // embeddings generate no tokens
}
