package route

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"math/bits"
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
// What a stream sent is kept, up to keepMax, as each event's difference
// from the one before: the bytes between their common prefix and common
// suffix. Consecutive events of every API repeat their framing, ids and
// model and differ in a few bytes of text, so a stream keeps a few bytes an
// event instead of a copy of each (a tenth or less of what it sent), with
// no parsing on the relay's path. The events are rebuilt, and their text
// read, only when they must be counted. A longer stream is counted from the
// events kept, scaled by the bytes sent, so memory stays flat however long
// the stream: a held stream of thousands costs its last event and at most
// keepMax.

// keepMax bounds the bytes of differences a stream keeps for counting.
const keepMax = 8 << 10

// keep is what a stream keeps of its events, pooled.
type keep struct {
	// diffs holds per event: its common prefix with the event before and
	// its common suffix, as uvarints, the length of the bytes between, as
	// a uvarint, and those bytes.
	diffs []byte
	last  []byte // the last event kept, whole
}

var keepPool = sync.Pool{New: func() any { return &keep{diffs: make([]byte, 0, 512), last: make([]byte, 0, 512)} }}

// sent is what a stream sent the client, for counting its usage.
type sent struct {
	k     *keep
	total int // bytes sent
	kept  int // bytes of the events kept: the first ones, up to keepMax
}

// add keeps data, the next event (or events) sent, while within keepMax.
func (s *sent) add(data []byte) {
	s.total += len(data)
	if s.kept+len(data) != s.total {
		return // an earlier event did not fit: keep only a whole start
	}
	if s.k == nil {
		s.k = keepPool.Get().(*keep)
	}
	k := s.k
	pre := commonPrefix(data, k.last)
	suf := commonSuffix(data[pre:], k.last[pre:])
	mid := data[pre : len(data)-suf]
	if len(k.diffs)+3*binary.MaxVarintLen32+len(mid) > keepMax {
		return
	}
	k.diffs = binary.AppendUvarint(k.diffs, uint64(pre))
	k.diffs = binary.AppendUvarint(k.diffs, uint64(suf))
	k.diffs = binary.AppendUvarint(k.diffs, uint64(len(mid)))
	k.diffs = append(k.diffs, mid...)
	k.last = append(k.last[:0], data...)
	s.kept += len(data)
}

// events rebuilds the events kept, one after the other.
func (s *sent) events() []byte {
	if s.k == nil {
		return nil
	}
	out := make([]byte, 0, s.kept)
	var prev []byte
	for d := s.k.diffs; len(d) > 0; {
		pre, n1 := binary.Uvarint(d)
		suf, n2 := binary.Uvarint(d[n1:])
		l, n3 := binary.Uvarint(d[n1+n2:])
		d = d[n1+n2+n3:]
		start := len(out)
		// out has room for every event: prev, a part of it, stays put.
		out = append(out, prev[:pre]...)
		out = append(out, d[:l]...)
		out = append(out, prev[uint64(len(prev))-suf:]...)
		prev, d = out[start:], d[l:]
	}
	return out
}

// commonPrefix is the length of the longest common prefix of a and b,
// compared eight bytes at a time.
func commonPrefix(a, b []byte) int {
	n := min(len(a), len(b))
	i := 0
	for ; i+8 <= n; i += 8 {
		if x := binary.LittleEndian.Uint64(a[i:]) ^ binary.LittleEndian.Uint64(b[i:]); x != 0 {
			return i + bits.TrailingZeros64(x)/8
		}
	}
	for i < n && a[i] == b[i] {
		i++
	}
	return i
}

// commonSuffix is the length of the longest common suffix of a and b.
func commonSuffix(a, b []byte) int {
	n := min(len(a), len(b))
	i := 0
	for ; i+8 <= n; i += 8 {
		// Little-endian, the last byte of each is the most significant.
		if x := binary.LittleEndian.Uint64(a[len(a)-i-8:]) ^ binary.LittleEndian.Uint64(b[len(b)-i-8:]); x != 0 {
			return i + bits.LeadingZeros64(x)/8
		}
	}
	for i < n && a[len(a)-1-i] == b[len(b)-1-i] {
		i++
	}
	return i
}

// release gives the buffers back; the counts are gone with them.
func (s *sent) release() {
	if k := s.k; k != nil && cap(k.diffs) <= 2*keepMax && cap(k.last) <= 64<<10 {
		k.diffs, k.last = k.diffs[:0], k.last[:0]
		keepPool.Put(k)
	}
	s.k = nil
}

// completionTokens counts the answer text of the kept events, scaled to the
// whole stream when it was longer than what was kept.
func (s *sent) completionTokens(x *Exchange) int {
	if s.kept == 0 {
		return 0
	}
	n := tokens.Count(x.Model, streamText(x.Endpoint, s.events()))
	if s.total > s.kept {
		n = int(int64(n) * int64(s.total) / int64(s.kept))
	}
	return n
}

// streamText reads the answer's text (content, reasoning, tool calls) out
// of a stream in the client's API.
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

// estimateAnswer records the usage of an unstreamed answer without one. A
// token count generates nothing and uses nothing.
func estimateAnswer(call *llm.Call, t *try) {
	if t.x.Endpoint == llm.EndpointCountTokens {
		return
	}
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
