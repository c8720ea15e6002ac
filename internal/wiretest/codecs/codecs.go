// Package codecs lists every wire codec for the tests that run them, each
// format's own and the translations between them: one table, so that a new
// format is added to all of them in one place.
package codecs

import (
	"github.com/llmoneapi/llmoneapi/internal/wiretest"
	"github.com/llmoneapi/llmoneapi/wire/anthropic"
	"github.com/llmoneapi/llmoneapi/wire/gemini"
	"github.com/llmoneapi/llmoneapi/wire/openai"
	"github.com/llmoneapi/llmoneapi/wire/responses"
)

// All are the codecs by format name. OpenAI streams are encoded for a client
// that asked for the usage chunk, so that the fixtures show it.
var All = map[string]wiretest.Codec{
	"openai": {
		DecodeRequest: openai.DecodeRequest, EncodeRequest: openai.EncodeRequest,
		DecodeResponse: openai.DecodeResponse, EncodeResponse: openai.EncodeResponse,
		NewStreamDecoder: func() wiretest.StreamDecoder { return &openai.StreamDecoder{} },
		NewStreamEncoder: func() wiretest.StreamEncoder { return openai.NewStreamEncoder(true) },
		DecodeError:      openai.DecodeError, EncodeError: openai.EncodeError,
	},
	"anthropic": {
		DecodeRequest: anthropic.DecodeRequest, EncodeRequest: anthropic.EncodeRequest,
		DecodeResponse: anthropic.DecodeResponse, EncodeResponse: anthropic.EncodeResponse,
		NewStreamDecoder: func() wiretest.StreamDecoder { return &anthropic.StreamDecoder{} },
		NewStreamEncoder: func() wiretest.StreamEncoder { return anthropic.NewStreamEncoder() },
		DecodeError:      anthropic.DecodeError, EncodeError: anthropic.EncodeError,
	},
	"gemini": {
		DecodeRequest: gemini.DecodeRequest, EncodeRequest: gemini.EncodeRequest,
		DecodeResponse: gemini.DecodeResponse, EncodeResponse: gemini.EncodeResponse,
		NewStreamDecoder: func() wiretest.StreamDecoder { return &gemini.StreamDecoder{} },
		NewStreamEncoder: func() wiretest.StreamEncoder { return gemini.NewStreamEncoder() },
		DecodeError:      gemini.DecodeError, EncodeError: gemini.EncodeError,
	},
	"responses": {
		DecodeRequest: responses.DecodeRequest, EncodeRequest: responses.EncodeRequest,
		DecodeResponse: responses.DecodeResponse, EncodeResponse: responses.EncodeResponse,
		NewStreamDecoder: func() wiretest.StreamDecoder { return &responses.StreamDecoder{} },
		NewStreamEncoder: func() wiretest.StreamEncoder { return responses.NewStreamEncoder() },
		DecodeError:      responses.DecodeError, EncodeError: responses.EncodeError,
	},
}
