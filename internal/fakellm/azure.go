package fakellm

import (
	"encoding/json"
	"net/http"
	"strings"
)

// The fake's Azure OpenAI API: the OpenAI endpoints under
// /openai/deployments/{deployment}/ (chat/completions, completions,
// embeddings), with an api-version query parameter and the server's APIKey
// in an api-key header (or as a bearer token, as Entra ID tokens come). The
// deployment names the model, whatever the body says; replies and faults are
// the OpenAI ones, errors in Azure's words where Azure has its own.

func serveAzure(s *Server, x *exchange, body []byte, readErr error) {
	r := x.r
	deployment, rest, _ := strings.Cut(strings.TrimPrefix(strings.TrimPrefix(r.URL.Path, "/v1"), "/openai/deployments/"), "/")
	var req apiRequest
	parseErr := readErr
	if readErr == nil && len(body) > 0 {
		parseErr = json.Unmarshal(body, &req)
	}
	req.Model = deployment
	s.record(r, body, &req)
	ep, _ := route("/" + rest)
	switch {
	case deployment == "" || ep == nil || ep.method != http.MethodPost || r.URL.Query().Get("api-version") == "":
		// Azure answers a path it does not serve, or one without an
		// api-version, with a bare 404.
		x.send(http.StatusNotFound, []byte(`{"error":{"code":"404","message":"Resource not found"}}`))
		return
	case r.Method != http.MethodPost:
		x.fail(errMethod(r))
		return
	case !s.azureKey(r):
		x.send(http.StatusUnauthorized, []byte(`{"error":{"code":"401","message":"Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key for an active subscription and use a correct regional API endpoint for your resource."}}`))
		return
	}
	s.serveOpenAI(x, ep, "", &req, readErr, parseErr)
}

func (s *Server) azureKey(r *http.Request) bool {
	if s.APIKey == "" {
		return true
	}
	if r.Header.Get("api-key") == s.APIKey {
		return true
	}
	return s.checkKey(r) == nil
}
