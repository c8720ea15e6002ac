// Package tokens estimates token counts for when an upstream reports no
// usage, with OpenAI's BPE tokenizers (tiktoken's encodings, embedded in the
// binary: nothing is downloaded at run time). The encoding is chosen per
// model family: o200k_base for OpenAI's GPT-4o generation and later
// (gpt-4o, gpt-4.1, gpt-4.5, gpt-5, o1, o3, o4, codex), cl100k_base for
// everything else, which for other providers' models (whose tokenizers are
// not public) is an approximation, typically within 10-20%.
//
// An encoding is loaded on its first use and shared after; loading both
// takes about 0.5 s of CPU and 50 MB of memory, so a module that will
// estimate should call Preload when it is provisioned. The embedded files
// add about 7.5 MB to the binary.
package tokens

import (
	"strings"
	"sync"

	"github.com/pkoukk/tiktoken-go"
	loader "github.com/pkoukk/tiktoken-go-loader"

	"github.com/llmoneapi/llmoneapi/wire"
)

// The encodings.
const (
	O200k  = "o200k_base"
	CL100k = "cl100k_base"
)

func init() {
	// The offline loader reads the BPE files embedded in the binary
	// instead of fetching them.
	tiktoken.SetBpeLoader(loader.NewOfflineLoader())
}

var encodings = map[string]func() (*tiktoken.Tiktoken, error){
	O200k:  sync.OnceValues(func() (*tiktoken.Tiktoken, error) { return tiktoken.GetEncoding(O200k) }),
	CL100k: sync.OnceValues(func() (*tiktoken.Tiktoken, error) { return tiktoken.GetEncoding(CL100k) }),
}

// o200kPrefixes are the model families that use o200k_base.
var o200kPrefixes = []string{"gpt-4o", "gpt-4.1", "gpt-4.5", "gpt-5", "o1", "o3", "o4", "chatgpt-4o", "codex", "gpt-oss", "computer-use"}

// EncodingFor returns the encoding used to count a model's tokens. A
// provider prefix ("openai/gpt-4o") is ignored.
func EncodingFor(model string) string {
	if i := strings.LastIndexByte(model, '/'); i >= 0 {
		model = model[i+1:]
	}
	model = strings.ToLower(model)
	for _, p := range o200kPrefixes {
		if strings.HasPrefix(model, p) {
			return O200k
		}
	}
	return CL100k
}

// Preload loads the encodings of the models in the background, so that the
// first estimate does not wait for them.
func Preload(models ...string) {
	for _, m := range models {
		go func() { _, _ = encodings[EncodingFor(m)]() }()
	}
}

// Count returns the number of tokens of text in the model's encoding.
func Count(model, text string) int {
	if text == "" {
		return 0
	}
	enc, err := encodings[EncodingFor(model)]()
	if err != nil {
		// The embedded files always load; were they missing, a rough
		// estimate beats none.
		return (len(text) + 3) / 4
	}
	// Special tokens in user text are counted as ordinary text, as an
	// upstream reading them from a request would.
	return len(enc.EncodeOrdinary(text))
}

// The overheads of OpenAI's chat format: each message costs a few tokens
// for its role and separators, and the reply is primed with a few more.
const (
	perMessage = 3
	perReply   = 3
	// perImage is a flat estimate for an image, whose real cost depends on
	// its size and the provider (OpenAI's low-detail price).
	perImage = 85
)

// Prompt estimates the prompt tokens of a request: its system prompt,
// messages (text, tool calls and results, images at a flat rate) and tool
// definitions, with the chat format's overheads.
func Prompt(model string, req *wire.Request) int {
	var text strings.Builder
	n := perReply
	if len(req.System) > 0 {
		n += perMessage
		partsText(&text, req.System, &n)
	}
	for _, m := range req.Messages {
		n += perMessage
		partsText(&text, m.Content, &n)
	}
	for _, t := range req.Tools {
		text.WriteString(t.Name)
		text.WriteByte('\n')
		text.WriteString(t.Description)
		text.WriteByte('\n')
		text.Write(t.Parameters)
		text.WriteByte('\n')
	}
	return n + Count(model, text.String())
}

func partsText(b *strings.Builder, parts []wire.Part, n *int) {
	for _, p := range parts {
		switch p.Type {
		case wire.PartText, wire.PartReasoning:
			b.WriteString(p.Text)
		case wire.PartImage:
			*n += perImage
		case wire.PartToolCall:
			b.WriteString(p.ToolCall.Name)
			b.WriteByte(' ')
			b.WriteString(p.ToolCall.Arguments)
		case wire.PartToolResult:
			partsText(b, p.ToolResult.Content, n)
		}
		b.WriteByte('\n')
	}
}

// Completion estimates the completion tokens of a response: its text,
// reasoning and tool calls.
func Completion(model string, resp *wire.Response) int {
	var text strings.Builder
	n := 0
	partsText(&text, resp.Content, &n)
	return n + Count(model, strings.TrimSuffix(text.String(), "\n"))
}
