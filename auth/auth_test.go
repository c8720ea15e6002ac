package auth

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/llmoneapi/llmoneapi/llm"
)

func init() {
	caddy.RegisterModule(fakeAuth{})
}

// fakeAuth is an authenticator for tests: it knows the keys in Users, or
// fails every lookup with Fail, where "$KEY" stands for the presented key.
type fakeAuth struct {
	Users map[string]string `json:"users,omitempty"`
	Fail  string            `json:"fail,omitempty"`
}

func (fakeAuth) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "llm.auth.fake", New: func() caddy.Module { return new(fakeAuth) }}
}

func (f *fakeAuth) Authenticate(_ context.Context, key string) (*llm.Identity, error) {
	if f.Fail != "" {
		return nil, errors.New(strings.ReplaceAll(f.Fail, "$KEY", key))
	}
	if user, ok := f.Users[key]; ok {
		return &llm.Identity{User: user, KeyID: "fake-" + user}, nil
	}
	return nil, nil
}

// UnmarshalCaddyfile: fake { user <key> <user>; fail <message> }.
func (f *fakeAuth) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next()
	for d.NextBlock(0) {
		switch d.Val() {
		case "user":
			var key, user string
			if !d.AllArgs(&key, &user) {
				return d.ArgErr()
			}
			if f.Users == nil {
				f.Users = map[string]string{}
			}
			f.Users[key] = user
		case "fail":
			if !d.AllArgs(&f.Fail) {
				return d.ArgErr()
			}
		default:
			return d.Errf("unrecognized fake subdirective '%s'", d.Val())
		}
	}
	return nil
}

// passwordHash is the SHA-256 digest of "password".
const passwordHash = "5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8"

// testIDSecret is the id_secret of the test configs, so that they know
// the default ids.
const testIDSecret = "test-id-secret"

const teamConfig = `{"authenticators": [{"source": "static", "id_secret": "` + testIDSecret + `", "keys": [
	{"key": "sk-alice", "user": "alice"},
	{"key": "sk-bob", "id": "bob-key", "user": "bob", "models": ["gpt-4o-mini", "text-embedding-*"]},
	{"key": "sha256:` + passwordHash + `", "id": "ops-key", "user": "ops"}
]}]}`

func hashKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

// defaultID is the id a static key without one gets, with the id secret.
func defaultID(secret, key string) string {
	sum := sha256.Sum256([]byte(key))
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(sum[:])
	return "key-" + hex.EncodeToString(mac.Sum(nil))[:12]
}

func loadHandler(t testing.TB, config string) (*Handler, error) {
	t.Helper()
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	mod, err := ctx.LoadModuleByID("http.handlers.llm_auth", json.RawMessage(config))
	if err != nil {
		return nil, err
	}
	return mod.(*Handler), nil
}

func mustLoad(t testing.TB, config string) *Handler {
	t.Helper()
	h, err := loadHandler(t, config)
	if err != nil {
		t.Fatalf("loading %s: %v", config, err)
	}
	return h
}

// serve runs req through h; next, if nil, answers 200 "ok".
func serve(t *testing.T, h *Handler, req *http.Request, next caddyhttp.HandlerFunc) *httptest.ResponseRecorder {
	t.Helper()
	if next == nil {
		next = func(w http.ResponseWriter, _ *http.Request) error {
			_, err := io.WriteString(w, "ok")
			return err
		}
	}
	return serveOn(t, &caddyhttp.Server{Logs: &caddyhttp.ServerLogConfig{}}, h, req, next)
}

// serveOn is serve on srv: the server's settings (its access logs) matter.
func serveOn(t *testing.T, srv *caddyhttp.Server, h *Handler, req *http.Request, next caddyhttp.HandlerFunc) *httptest.ResponseRecorder {
	t.Helper()
	w := httptest.NewRecorder()
	req = caddyhttp.PrepareRequest(req, caddy.NewReplacer(), w, srv)
	if err := h.ServeHTTP(w, req, next); err != nil {
		t.Fatalf("ServeHTTP returned %v; errors must be written to the client", err)
	}
	return w
}

func withKey(req *http.Request, key string) *http.Request {
	req.Header.Set("Authorization", "Bearer "+key)
	return req
}

func chat(model string) *http.Request {
	body := `{"model": "` + model + `", "messages": [{"role": "user", "content": "hi"}]}`
	return httptest.NewRequest(http.MethodPost, "/v1/chat/completions", strings.NewReader(body))
}

type apiError struct {
	Message, Type, Code, Param string
}

// wantError checks the response is an OpenAI-style error and returns it.
func wantError(t *testing.T, w *httptest.ResponseRecorder, status int, typ, code string) apiError {
	t.Helper()
	if w.Code != status {
		t.Fatalf("status = %d, want %d; body %s", w.Code, status, w.Body)
	}
	if ct := w.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	var body struct{ Error apiError }
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
		t.Fatalf("body is not JSON: %v: %s", err, w.Body)
	}
	if body.Error.Type != typ || body.Error.Code != code {
		t.Errorf("error type/code = %s/%s, want %s/%s; body %s", body.Error.Type, body.Error.Code, typ, code, w.Body)
	}
	if body.Error.Message == "" {
		t.Errorf("error has no message: %s", w.Body)
	}
	return body.Error
}

func mustNotCall(t *testing.T) caddyhttp.HandlerFunc {
	return func(http.ResponseWriter, *http.Request) error {
		t.Error("next handler called")
		return nil
	}
}

func TestMissingKey(t *testing.T) {
	h := mustLoad(t, teamConfig)
	for name, header := range map[string][2]string{
		"none":         {},
		"basic":        {"Authorization", "Basic YWxpY2U6c2VjcmV0"},
		"empty bearer": {"Authorization", "Bearer  "},
		"empty x-api":  {"X-Api-Key", ""},
	} {
		t.Run(name, func(t *testing.T) {
			req := chat("gpt-4o")
			if header[0] != "" {
				req.Header.Set(header[0], header[1])
			}
			w := serve(t, h, req, mustNotCall(t))
			e := wantError(t, w, http.StatusUnauthorized, llm.TypeAuthentication, "missing_api_key")
			if !strings.Contains(e.Message, "Authorization: Bearer") || !strings.Contains(e.Message, "x-api-key") {
				t.Errorf("message does not say how to send the key: %q", e.Message)
			}
			if w.Header().Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
		})
	}
}

func TestInvalidKey(t *testing.T) {
	h := mustLoad(t, teamConfig)
	for _, key := range []string{"sk-mallory", "sk-alic", "sk-alice2", "sha256:" + passwordHash} {
		w := serve(t, h, withKey(chat("gpt-4o"), key), mustNotCall(t))
		wantError(t, w, http.StatusUnauthorized, llm.TypeAuthentication, "invalid_api_key")
		if strings.Contains(w.Body.String(), key) {
			t.Errorf("the response echoes the key %q: %s", key, w.Body)
		}
	}
}

func TestKeyHeaders(t *testing.T) {
	h := mustLoad(t, teamConfig)
	for name, headers := range map[string]map[string]string{
		"bearer":           {"Authorization": "Bearer sk-alice"},
		"bearer any case":  {"Authorization": "bEaReR   sk-alice "},
		"x-api-key":        {"x-api-key": "sk-alice"},
		"api-key":          {"api-key": "sk-alice"},
		"basic, x-api-key": {"Authorization": "Basic Zm9vOmJhcg==", "X-Api-Key": "sk-alice"},
		"bearer wins":      {"Authorization": "Bearer sk-alice", "X-Api-Key": "sk-bob", "Api-Key": "sk-bob"},
		"x-api-key wins":   {"X-Api-Key": "sk-alice", "Api-Key": "sk-bob"},
	} {
		t.Run(name, func(t *testing.T) {
			req := chat("gpt-4o")
			for k, v := range headers {
				req.Header.Set(k, v)
			}
			called := false
			w := serve(t, h, req, func(w http.ResponseWriter, r *http.Request) error {
				called = true
				for _, hdr := range []string{"Authorization", "X-Api-Key", "Api-Key"} {
					if v, ok := r.Header[hdr]; ok {
						t.Errorf("header %s = %q reached the next handler", hdr, v)
					}
				}
				if id := llm.CallFrom(r).Identity; id == nil || id.User != "alice" {
					t.Errorf("identity = %+v, want alice", id)
				}
				return nil
			})
			if !called {
				t.Fatalf("next not called; status %d, body %s", w.Code, w.Body)
			}
		})
	}
}

// extraLogFields reads the fields llm_auth added to the access log line.
// ExtraLogFields has no getter, hence reflection.
func extraLogFields(t *testing.T, r *http.Request) map[string]string {
	t.Helper()
	extra := r.Context().Value(caddyhttp.ExtraLogFieldsCtxKey).(*caddyhttp.ExtraLogFields)
	fields := reflect.ValueOf(extra).Elem().FieldByName("fields")
	if !fields.IsValid() {
		t.Fatal("caddyhttp.ExtraLogFields changed shape; update this test")
	}
	out := map[string]string{}
	for i := range fields.Len() {
		f := fields.Index(i)
		out[f.FieldByName("Key").String()] = f.FieldByName("String").String()
	}
	return out
}

// TestNoAccessLogFields: a server without access logs gets no extra log
// fields, which nothing would read.
func TestNoAccessLogFields(t *testing.T) {
	h := mustLoad(t, teamConfig)
	var logged map[string]string
	w := serveOn(t, &caddyhttp.Server{}, h, withKey(chat("gpt-4o-mini"), "sk-alice"), func(w http.ResponseWriter, r *http.Request) error {
		logged = extraLogFields(t, r)
		return nil
	})
	if w.Code != http.StatusOK || logged["user"] != "" || logged["key_id"] != "" {
		t.Fatalf("status %d, fields %v", w.Code, logged)
	}
}

func TestIdentityReachesNext(t *testing.T) {
	h := mustLoad(t, teamConfig)
	for _, tc := range []struct{ key, user, keyID string }{
		{"sk-alice", "alice", defaultID(testIDSecret, "sk-alice")},
		{"sk-bob", "bob", "bob-key"},
		{"password", "ops", "ops-key"},
	} {
		var placeholders string
		var logged map[string]string
		w := serve(t, h, withKey(chat("gpt-4o-mini"), tc.key), func(w http.ResponseWriter, r *http.Request) error {
			repl := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
			placeholders = repl.ReplaceAll("{llm.user} {llm.key_id}", "-")
			logged = extraLogFields(t, r)
			return nil
		})
		if w.Code != http.StatusOK {
			t.Fatalf("key %s: status %d, body %s", tc.key, w.Code, w.Body)
		}
		if want := tc.user + " " + tc.keyID; placeholders != want {
			t.Errorf("key %s: {llm.user} {llm.key_id} = %q, want %q", tc.key, placeholders, want)
		}
		if logged["user"] != tc.user || logged["key_id"] != tc.keyID {
			t.Errorf("key %s: access log fields = %v, want user %s, key_id %s", tc.key, logged, tc.user, tc.keyID)
		}
	}
}

func TestModelScope(t *testing.T) {
	h := mustLoad(t, teamConfig)
	for _, model := range []string{"gpt-4o-mini", "text-embedding-3-small", "text-embedding-"} {
		body := ""
		w := serve(t, h, withKey(chat(model), "sk-bob"), func(w http.ResponseWriter, r *http.Request) error {
			b, err := io.ReadAll(r.Body)
			body = string(b)
			return err
		})
		if w.Code != http.StatusOK {
			t.Errorf("model %s: status %d, body %s", model, w.Code, w.Body)
		}
		if !strings.Contains(body, `"model": "`+model+`"`) {
			t.Errorf("model %s: next got body %q, want the client's body", model, body)
		}
	}

	for _, model := range []string{"gpt-4o", "gpt-4o-mini-2024", "text-embedding", "claude-sonnet"} {
		w := serve(t, h, withKey(chat(model), "sk-bob"), mustNotCall(t))
		e := wantError(t, w, http.StatusForbidden, llm.TypePermission, "model_not_allowed")
		if e.Param != "model" || !strings.Contains(e.Message, "'bob-key'") || !strings.Contains(e.Message, "'"+model+"'") {
			t.Errorf("model %s: error %+v should name the key id and the model", model, e)
		}
	}
}

func TestModelScopeBadBodies(t *testing.T) {
	h := mustLoad(t, `{"max_body_size": 100, "authenticators": [{"source": "static", "keys": [
		{"key": "sk-bob", "models": ["gpt-4o-mini"]}
	]}]}`)
	for _, tc := range []struct {
		name, body string
		status     int
		code       string
	}{
		{"no model", `{"messages": []}`, http.StatusBadRequest, "missing_model"},
		{"empty", ``, http.StatusBadRequest, "invalid_json"},
		{"not JSON", `model=gpt-4o-mini`, http.StatusBadRequest, "invalid_json"},
		{"too large", `{"model": "gpt-4o-mini", "messages": "` + strings.Repeat("x", 100) + `"}`, http.StatusRequestEntityTooLarge, "request_too_large"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := withKey(httptest.NewRequest(http.MethodPost, "/v1/chat/completions", strings.NewReader(tc.body)), "sk-bob")
			wantError(t, serve(t, h, req, mustNotCall(t)), tc.status, llm.TypeInvalidRequest, tc.code)
		})
	}
}

// A key without a model scope must not cost a body read: whatever the body,
// it goes on untouched.
func TestUnscopedKeyDoesNotReadBody(t *testing.T) {
	h := mustLoad(t, teamConfig)
	const body = `not JSON at all`
	called := false
	serve(t, h, withKey(httptest.NewRequest(http.MethodPost, "/v1/chat/completions", strings.NewReader(body)), "sk-alice"),
		func(w http.ResponseWriter, r *http.Request) error {
			called = true
			if llm.CallFrom(r).Request != nil {
				t.Error("the body was parsed for a key without a model scope")
			}
			if b, _ := io.ReadAll(r.Body); string(b) != body {
				t.Errorf("next read body %q, want %q", b, body)
			}
			return nil
		})
	if !called {
		t.Fatal("next not called")
	}
}

func TestScopedKeyWithoutBody(t *testing.T) {
	h := mustLoad(t, teamConfig)
	w := serve(t, h, withKey(httptest.NewRequest(http.MethodGet, "/v1/models", nil), "sk-bob"), nil)
	if w.Code != http.StatusOK {
		t.Fatalf("GET /v1/models with a scoped key: status %d, body %s", w.Code, w.Body)
	}
}

func TestHashedKeyDefaultID(t *testing.T) {
	var ids []string
	for _, key := range []string{"sk-carol", "sha256:" + hashKey("sk-carol"), "sha256:" + strings.ToUpper(hashKey("sk-carol"))} {
		h := mustLoad(t, `{"authenticators": [{"source": "static", "id_secret": "`+testIDSecret+`", "keys": [{"key": "`+key+`"}]}]}`)
		serve(t, h, withKey(chat("m"), "sk-carol"), func(w http.ResponseWriter, r *http.Request) error {
			ids = append(ids, llm.CallFrom(r).Identity.KeyID)
			return nil
		})
	}
	want := defaultID(testIDSecret, "sk-carol")
	if len(ids) != 3 || ids[0] != want || ids[1] != want || ids[2] != want {
		t.Errorf("key ids = %v, want %s for the plain and hashed forms", ids, want)
	}
}

// Without id_secret, default ids are keyed with a secret of the
// installation: stable across restarts, different on another installation,
// and never the bare SHA-256 prefix a log reader could check a guess with.
func TestDefaultIDSecret(t *testing.T) {
	idOf := func() string {
		h := mustLoad(t, `{"authenticators": [{"source": "static", "keys": [{"key": "sk-carol"}]}]}`)
		return h.authenticators[0].(*Static).entries[0].identity.KeyID
	}
	t.Setenv("XDG_DATA_HOME", t.TempDir())
	first := idOf()
	if again := idOf(); again != first {
		t.Errorf("the id changed on reload: %s, then %s", first, again)
	}
	if first == "key-"+hashKey("sk-carol")[:12] {
		t.Errorf("the id %s is the key's bare SHA-256 prefix", first)
	}
	path := filepath.Join(caddy.AppDataDir(), "llmoneapi", "key-id-secret")
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm()&0o077 != 0 {
		t.Errorf("%s has mode %v; others must not read it", path, info.Mode())
	}
	secret, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if want := defaultID(string(secret), "sk-carol"); first != want {
		t.Errorf("id %s, want %s from the installation secret", first, want)
	}
	t.Setenv("XDG_DATA_HOME", t.TempDir())
	if other := idOf(); other == first {
		t.Errorf("another installation got the same id %s", other)
	}
}

func TestEnvKey(t *testing.T) {
	t.Setenv("LLMONEAPI_TEST_TEAM_KEY", "sk-from-env")
	h := mustLoad(t, `{"authenticators": [{"source": "static", "keys": [{"key": "{env.LLMONEAPI_TEST_TEAM_KEY}", "user": "team"}]}]}`)
	if w := serve(t, h, withKey(chat("m"), "sk-from-env"), nil); w.Code != http.StatusOK {
		t.Errorf("the env key: status %d, body %s", w.Code, w.Body)
	}
	w := serve(t, h, withKey(chat("m"), "{env.LLMONEAPI_TEST_TEAM_KEY}"), mustNotCall(t))
	wantError(t, w, http.StatusUnauthorized, llm.TypeAuthentication, "invalid_api_key")
}

func TestAuthenticatorOrder(t *testing.T) {
	h := mustLoad(t, `{"authenticators": [
		{"source": "fake", "users": {"sk-alice": "alice-from-fake"}},
		{"source": "static", "keys": [{"key": "sk-alice", "user": "alice"}, {"key": "sk-dave", "user": "dave"}]},
		{"source": "fake", "fail": "store down"}
	]}`)
	for key, want := range map[string]string{"sk-alice": "alice-from-fake", "sk-dave": "dave"} {
		serve(t, h, withKey(chat("m"), key), func(w http.ResponseWriter, r *http.Request) error {
			if got := llm.CallFrom(r).Identity.User; got != want {
				t.Errorf("key %s: user %s, want %s", key, got, want)
			}
			return nil
		})
	}
	// Only a key the first two do not know reaches the failing one.
	wantError(t, serve(t, h, withKey(chat("m"), "sk-erin"), mustNotCall(t)), http.StatusServiceUnavailable, llm.TypeServer, "auth_unavailable")
}

func TestAuthenticatorError(t *testing.T) {
	h := mustLoad(t, `{"authenticators": [{"source": "fake", "fail": "store down while looking up $KEY"}]}`)
	const key = "sk-very-secret-key"
	w := serve(t, h, withKey(chat("m"), key), mustNotCall(t))
	e := wantError(t, w, http.StatusServiceUnavailable, llm.TypeServer, "auth_unavailable")
	if strings.Contains(w.Body.String(), key) {
		t.Errorf("the response contains the key: %s", w.Body)
	}
	if strings.Contains(e.Message, "store down") || !strings.Contains(e.Message, "try again later") {
		t.Errorf("message %q: the cause belongs in the log, the client needs to know to retry", e.Message)
	}
}

func TestConfigErrors(t *testing.T) {
	t.Setenv("LLMONEAPI_TEST_EMPTY", "")
	static := func(keys string) string {
		return `{"authenticators": [{"source": "static", "id_secret": "` + testIDSecret + `", "keys": [` + keys + `]}]}`
	}
	for _, tc := range []struct {
		name, config string
		want         []string
	}{
		{"no authenticators", `{}`, []string{"at least one authenticator"}},
		{"no keys", `{"authenticators": [{"source": "static"}]}`, []string{"no keys"}},
		{"unknown authenticator", `{"authenticators": [{"source": "ldap"}]}`, []string{"llm.auth.ldap"}},
		{"negative max_body_size", `{"max_body_size": -1, "authenticators": [{"source": "fake"}]}`, []string{"max_body_size", "negative"}},
		{"empty key", static(`{"key": "sk-a"}, {"key": "{env.LLMONEAPI_TEST_EMPTY}", "id": "team"}`),
			[]string{"static key #2 (id 'team')", "empty", "environment variable"}},
		{"short hash", static(`{"key": "sha256:5e884898da28"}`), []string{"static key #1", "malformed sha256", "64 hex digits"}},
		{"non-hex hash", static(`{"key": "sha256:` + strings.Repeat("zz", 32) + `", "id": "z"}`), []string{"static key #1 (id 'z')", "not hexadecimal"}},
		{"duplicate key", static(`{"key": "sk-dup-secret", "id": "first"}, {"key": "sha256:` + hashKey("sk-dup-secret") + `", "id": "second"}`),
			[]string{"static key #2 (id 'second') is the same key as static key #1 (id 'first')"}},
		{"duplicate id", static(`{"key": "sk-a", "id": "team"}, {"key": "sk-b", "id": "team"}`),
			[]string{"static key #2", "id 'team' is already used by key #1"}},
		{"duplicate default id", static(`{"key": "sk-a"}, {"key": "sk-b", "id": "` + defaultID(testIDSecret, "sk-a") + `"}`),
			[]string{"static key #2", "already used by key #1"}},
		{"empty id_secret", `{"authenticators": [{"source": "static", "id_secret": "{env.LLMONEAPI_TEST_EMPTY}", "keys": [{"key": "sk-a"}]}]}`,
			[]string{"id_secret is empty", "environment variable"}},
		{"bad glob", static(`{"key": "sk-a", "id": "a", "models": ["gpt-[4"]}`), []string{"static key #1 (id 'a')", "bad model pattern 'gpt-[4'"}},
		{"empty model", static(`{"key": "sk-a", "models": [""]}`), []string{"static key #1", "empty model pattern"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := loadHandler(t, tc.config)
			if err == nil {
				t.Fatal("config loaded, want an error")
			}
			for _, want := range tc.want {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not contain %q", err, want)
				}
			}
			for _, secret := range []string{"sk-a", "sk-b", "sk-dup-secret", "5e884898da28"} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error %q contains the key text %q", err, secret)
				}
			}
		})
	}
}
