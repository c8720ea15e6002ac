package route

import (
	"encoding/json"

	"github.com/llmoneapi/llmoneapi/llm"
	"github.com/llmoneapi/llmoneapi/wire/openai"
	"github.com/llmoneapi/llmoneapi/wire/tokens"
)

// Usage the upstream did not report is counted with wire/tokens in the
// upstream model's encoding: the prompt from the client's request (a chat's
// messages, system prompt and tools with the chat format's overheads; a
// completion's prompt or an embedding's input as plain text), the
// completion from the answer's text. It is counted after the answer was
// sent, so the client never waits on the tokenizer.

// estimateAnswer records the usage of an unstreamed answer without one.
func estimateAnswer(call *llm.Call, t *try) {
	prompt := promptTokens(t.x)
	completion := answerTokens(t.x, t.body)
	call.Usage, call.UsageSource = counted(prompt, completion), llm.UsageEstimated
}

func counted(prompt, completion int) llm.Usage {
	return llm.Usage{PromptTokens: int64(prompt), CompletionTokens: int64(completion), TotalTokens: int64(prompt + completion)}
}

// settleStream records a relayed stream's usage: the upstream's own, marked
// partial when the stream did not finish, or else the counted text deltas,
// estimated for a finished stream and partial for a cut one; none when
// nothing was generated.
func settleStream(call *llm.Call, t *try, finished bool) {
	if call.UsageSource == llm.UsageUpstream {
		if !finished {
			call.UsageSource = llm.UsagePartial
		}
		return
	}
	completion := t.count.Tokens()
	if completion == 0 {
		call.UsageSource = llm.UsageNone
		return
	}
	prompt := promptTokens(t.x)
	call.Usage, call.UsageSource = counted(prompt, completion), llm.UsagePartial
	if finished {
		call.UsageSource = llm.UsageEstimated
	}
}

// promptTokens estimates the prompt tokens of the client's request.
func promptTokens(x *Exchange) int {
	body := x.Request.Body
	if x.Endpoint == llm.EndpointChat {
		req, err := openai.DecodeRequest(body)
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
// the OpenAI API (the client's).
func answerTokens(x *Exchange, body []byte) int {
	switch x.Endpoint {
	case llm.EndpointChat:
		resp, err := openai.DecodeResponse(body)
		if err != nil {
			return 0
		}
		return tokens.Completion(x.Model, resp)
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
