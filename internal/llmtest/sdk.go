package llmtest

import (
	"net/http"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
)

// OpenAI returns an official OpenAI SDK client for the gateway at baseURL
// (a Gateway's URL, without /v1) with the client key given. It never
// retries, so a test sees each answer the gateway gives, and opens a
// connection per request: a config reload (Gateway.Load) closes the old
// servers' idle connections, and a request racing that close would fail
// with EOF, which is Caddy's behaviour, not the gateway's.
func OpenAI(baseURL, key string) openai.Client {
	return openai.NewClient(option.WithBaseURL(baseURL+"/v1"), option.WithAPIKey(key), option.WithMaxRetries(0),
		option.WithHTTPClient(&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}))
}
