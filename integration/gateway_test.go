// Package integration runs real Caddy servers with the llmoneapi modules,
// in this test process, against the fake provider, and talks to them as
// users do: with the official SDKs and plain HTTP.
package integration

import (
	"testing"

	"github.com/llmoneapi/llmoneapi/internal/fakellm"
	"github.com/llmoneapi/llmoneapi/internal/llmtest"
)

// upstreamKey is the key the fake provider wants from the gateway.
const upstreamKey = llmtest.UpstreamKey

type gateway = llmtest.Gateway

func start(t *testing.T, fake *fakellm.Server, site string) *gateway {
	t.Helper()
	return llmtest.Start(t, fake, site)
}
