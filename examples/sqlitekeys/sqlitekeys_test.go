package sqlitekeys_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/openai/openai-go/v3"

	_ "github.com/llmoneapi/llmoneapi/examples/sqlitekeys"
	"github.com/llmoneapi/llmoneapi/internal/llmtest"
)

func TestMain(m *testing.M) { llmtest.Main(m) }

// keysDB writes the Python gateway's table, as a team migrating would have
// it, and returns the file's path and a writable handle to it.
func keysDB(t *testing.T) (string, *sql.DB) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "auth.db")
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if _, err := db.Exec(`CREATE TABLE api_keys (key TEXT PRIMARY KEY, user_id TEXT NOT NULL, active BOOLEAN NOT NULL);
		INSERT INTO api_keys VALUES ('sk-alice-0123456789', 'alice', 1), ('sk-gone-0123456789', 'mallory', 0)`); err != nil {
		t.Fatal(err)
	}
	return path, db
}

const site = `:{PORT} {
	llm_stats {
		log
	}
	llm_auth {
		sqlitekeys {DB}
		static {
			key sk-static-0123456789 {
				user ops
			}
		}
	}
	llm_route {
		model gpt-4o-mini {
			upstream openai {UPSTREAM} ` + llmtest.UpstreamKey + `
		}
	}
}`

func chat(t *testing.T, g *llmtest.Gateway, key string) (*openai.ChatCompletion, *openai.Error) {
	t.Helper()
	client := llmtest.OpenAI(g.URL, key)
	resp, err := client.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{
		Model:    "gpt-4o-mini",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Hello")},
	})
	var apiErr *openai.Error
	if err != nil && !errors.As(err, &apiErr) {
		t.Fatalf("key %s: %v", key, err)
	}
	return resp, apiErr
}

func TestKeysFromTheTable(t *testing.T) {
	path, db := keysDB(t)
	g := llmtest.Start(t, nil, strings.ReplaceAll(site, "{DB}", path))

	resp, apiErr := chat(t, g, "sk-alice-0123456789")
	if apiErr != nil {
		t.Fatalf("an active key from the table: %v", apiErr)
	}
	if resp.Usage.TotalTokens == 0 {
		t.Errorf("no usage in %+v", resp)
	}
	if line := g.LastStats(t, 1); line["user"] != "alice" || line["status"] != float64(200) {
		t.Errorf("stats line %v, want user alice and status 200", line)
	}
	for _, r := range g.Fake.Requests() {
		if got := r.Header.Get("Authorization"); got != "Bearer "+llmtest.UpstreamKey {
			t.Errorf("the upstream got Authorization %q, want only its own key", got)
		}
	}

	for _, tc := range []struct{ key, code string }{
		{"sk-gone-0123456789", "api_key_disabled"}, // inactive: refused, the static one is not asked
		{"sk-nobody-0123456789", "invalid_api_key"},
	} {
		_, apiErr := chat(t, g, tc.key)
		if apiErr == nil || apiErr.StatusCode != http.StatusUnauthorized || apiErr.Code != tc.code {
			t.Errorf("key %s: got %v, want 401 %s", tc.key, apiErr, tc.code)
		}
	}
	if _, apiErr := chat(t, g, "sk-static-0123456789"); apiErr != nil {
		t.Errorf("a key the next authenticator knows: %v", apiErr)
	}

	// Deactivating a key takes effect on its next request: nothing is cached.
	if _, err := db.Exec(`UPDATE api_keys SET active = 0 WHERE user_id = 'alice'`); err != nil {
		t.Fatal(err)
	}
	if _, apiErr := chat(t, g, "sk-alice-0123456789"); apiErr == nil || apiErr.Code != "api_key_disabled" {
		t.Errorf("a key deactivated in the table: got %v, want 401 api_key_disabled", apiErr)
	}

	// A broken store is contained: its keys get 503, other keys still work.
	if _, err := db.Exec(`DROP TABLE api_keys`); err != nil {
		t.Fatal(err)
	}
	if _, apiErr := chat(t, g, "sk-alice-0123456789"); apiErr == nil || apiErr.StatusCode != http.StatusServiceUnavailable || apiErr.Code != "auth_unavailable" {
		t.Errorf("with the table gone: got %v, want 503 auth_unavailable", apiErr)
	}
	if _, apiErr := chat(t, g, "sk-static-0123456789"); apiErr != nil {
		t.Errorf("with the table gone, a static key: %v", apiErr)
	}
}

func TestWrongConfigFailsAtLoad(t *testing.T) {
	noTable := filepath.Join(t.TempDir(), "other.db")
	other, err := sql.Open("sqlite", noTable)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.Exec(`CREATE TABLE other (x)`); err != nil {
		t.Fatal(err)
	}
	other.Close()
	for _, tc := range []struct{ config, want string }{
		{`{}`, "no database given"},
		{`{"database": "` + filepath.Join(t.TempDir(), "missing.db") + `"}`, "missing.db"},
		{`{"database": "` + noTable + `"}`, "no such table: api_keys"},
	} {
		ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
		_, err := ctx.LoadModuleByID("llm.auth.sqlitekeys", json.RawMessage(tc.config))
		cancel()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("config %s: got %v, want an error naming %q", tc.config, err, tc.want)
		}
	}

}

// The host reads the Caddyfile into the module's fields, and errors with
// the syntax.
func TestCaddyfile(t *testing.T) {
	adapt := func(in string) (string, error) {
		out, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(":8080 {\n\tllm_auth {\n"+in+"\n\t}\n}"), nil)
		return string(out), err
	}
	for _, in := range []string{"sqlitekeys /var/keys.db", "sqlitekeys {\ndatabase /var/keys.db\n}"} {
		if out, err := adapt(in); err != nil || !strings.Contains(out, `{"database":"/var/keys.db","source":"sqlitekeys"}`) {
			t.Errorf("Caddyfile %q: got %s, %v", in, out, err)
		}
	}
	for in, want := range map[string]string{
		"sqlitekeys a.db b.db":            "sqlitekeys takes the arguments [<database>], not 'b.db'",
		"sqlitekeys a.db {\ndatabase b.db\n}": "sqlitekeys: 'database' is given twice",
		"sqlitekeys {\ntable t\n}":        "unknown sqlitekeys subdirective 'table'; it takes database",
	} {
		if _, err := adapt(in); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Caddyfile %q: got %v, want %q", in, err, want)
		}
	}
}
