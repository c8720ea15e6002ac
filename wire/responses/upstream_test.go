package responses_test

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/llmoneapi/llmoneapi/internal/fakellm"
	"github.com/llmoneapi/llmoneapi/internal/wiretest"
	"github.com/llmoneapi/llmoneapi/sse"
	"github.com/llmoneapi/llmoneapi/wire"
	"github.com/llmoneapi/llmoneapi/wire/responses"
)

// TestUpstream speaks to the fake provider's Responses API as an upstream:
// the encoded request is accepted, and the answer, whole and streamed,
// decodes into the tool call and usage the fake was told to give.
func TestUpstream(t *testing.T) {
	ts := httptest.NewServer(&fakellm.Server{APIKey: "sk-up", Behavior: fakellm.Behavior{
		Chunks: 3, ToolCall: &fakellm.ToolCall{Name: "get_weather", Arguments: `{"city":"Oslo"}`},
	}})
	defer ts.Close()
	for _, stream := range []bool{false, true} {
		req := wiretest.CanonicalRequest(t, wiretest.Canonical+"/request/tools.json")
		req.Stream = stream
		body, _, err := responses.EncodeRequest(req)
		if err != nil {
			t.Fatal(err)
		}
		hr, _ := http.NewRequest(http.MethodPost, ts.URL+"/v1/responses", bytes.NewReader(body))
		hr.Header.Set("Authorization", "Bearer sk-up")
		hr.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(hr)
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("stream=%v: %d %s", stream, resp.StatusCode, data)
		}
		var got *wire.Response
		if stream {
			got = collect(t, data)
		} else if got, err = responses.DecodeResponse(data); err != nil {
			t.Fatalf("%s: %v", data, err)
		}
		var call *wire.ToolCall
		for _, p := range got.Content {
			if p.Type == wire.PartToolCall {
				call = p.ToolCall
			}
		}
		if call == nil || call.Name != "get_weather" || call.Arguments != `{"city":"Oslo"}` || call.ID == "" {
			t.Errorf("stream=%v: content %+v", stream, got.Content)
		}
		if got.FinishReason != wire.FinishToolCalls || got.Usage == nil || got.Usage.PromptTokens == 0 || got.Usage.CompletionTokens == 0 {
			t.Errorf("stream=%v: finish %q usage %+v", stream, got.FinishReason, got.Usage)
		}
		if u, err := responses.Usage(lastData(t, data, stream)); err != nil || u == nil || *u != *got.Usage {
			t.Errorf("stream=%v: Usage() = %+v, %v; decoded %+v", stream, u, err, got.Usage)
		}
	}
}

// collect decodes a whole stream into the response it adds up to.
func collect(t *testing.T, body []byte) *wire.Response {
	t.Helper()
	d := &responses.StreamDecoder{}
	out := &wire.Response{}
	calls := map[int]*wire.ToolCall{}
	r := sse.NewReader(bytes.NewReader(body), 0)
	for {
		ev, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		evs, err := d.Decode(nil, ev.Data)
		if err != nil {
			t.Fatalf("%s: %v", ev.Data, err)
		}
		for _, e := range evs {
			switch e.Type {
			case wire.EventToolCallStart:
				calls[e.Index] = &wire.ToolCall{ID: e.CallID, Name: e.Name}
				out.Content = append(out.Content, wire.Part{Type: wire.PartToolCall, ToolCall: calls[e.Index]})
			case wire.EventToolCallDelta:
				calls[e.Index].Arguments += e.Text
			case wire.EventTextDelta:
				out.Content = append(out.Content, wire.Part{Type: wire.PartText, Text: e.Text})
			case wire.EventFinish:
				out.FinishReason = e.FinishReason
			case wire.EventUsage:
				out.Usage = e.Usage
			case wire.EventError:
				t.Fatalf("stream error %v", e.Err)
			}
		}
	}
	if !d.Done {
		t.Errorf("the stream did not end with response.completed: %s", body)
	}
	return out
}

func lastData(t *testing.T, body []byte, stream bool) []byte {
	if !stream {
		return body
	}
	_, data := wiretest.SSE(t, body)
	return data[len(data)-1]
}
