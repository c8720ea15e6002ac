package anthropic_test

import (
	"testing"

	"github.com/llmoneapi/llmoneapi/internal/wiretest"
	"github.com/llmoneapi/llmoneapi/wire/anthropic"
)

var codec = wiretest.Codec{
	DecodeRequest:    anthropic.DecodeRequest,
	EncodeRequest:    anthropic.EncodeRequest,
	DecodeResponse:   anthropic.DecodeResponse,
	EncodeResponse:   anthropic.EncodeResponse,
	NewStreamDecoder: func() wiretest.StreamDecoder { return &anthropic.StreamDecoder{} },
	NewStreamEncoder: func() wiretest.StreamEncoder { return anthropic.NewStreamEncoder() },
	DecodeError:      anthropic.DecodeError,
	EncodeError:      anthropic.EncodeError,
}

func TestGolden(t *testing.T) { wiretest.RunGolden(t, codec) }

func FuzzDecodeRequest(f *testing.F)  { wiretest.FuzzRequest(f, codec) }
func FuzzDecodeResponse(f *testing.F) { wiretest.FuzzResponse(f, codec) }
func FuzzDecodeStream(f *testing.F)   { wiretest.FuzzStream(f, codec) }
func FuzzDecodeError(f *testing.F)    { wiretest.FuzzError(f, codec) }

func BenchmarkTranslate(b *testing.B) { wiretest.Benchmark(b, codec) }
