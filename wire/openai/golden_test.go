package openai_test

import (
	"testing"

	"github.com/llmoneapi/llmoneapi/internal/wiretest"
	"github.com/llmoneapi/llmoneapi/wire/openai"
)

var codec = wiretest.Codec{
	DecodeRequest:    openai.DecodeRequest,
	EncodeRequest:    openai.EncodeRequest,
	DecodeResponse:   openai.DecodeResponse,
	EncodeResponse:   openai.EncodeResponse,
	NewStreamDecoder: func() wiretest.StreamDecoder { return &openai.StreamDecoder{} },
	NewStreamEncoder: func() wiretest.StreamEncoder { return openai.NewStreamEncoder(true) },
	DecodeError:      openai.DecodeError,
	EncodeError:      openai.EncodeError,
}

func TestGolden(t *testing.T) { wiretest.RunGolden(t, codec) }

func FuzzDecodeRequest(f *testing.F)  { wiretest.FuzzRequest(f, codec) }
func FuzzDecodeResponse(f *testing.F) { wiretest.FuzzResponse(f, codec) }
func FuzzDecodeStream(f *testing.F)   { wiretest.FuzzStream(f, codec) }
func FuzzDecodeError(f *testing.F)    { wiretest.FuzzError(f, codec) }

func BenchmarkTranslate(b *testing.B) { wiretest.Benchmark(b, codec) }
