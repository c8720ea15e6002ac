package auth_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/spf13/cobra"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	"github.com/llmoneapi/llmoneapi/internal/llmtest"
	"github.com/llmoneapi/llmoneapi/internal/sqldb"
)

// llmCommand runs `caddy <args>` and returns its standard output, failing the
// test if it fails.
func llmCommand(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, err := runLLMCommand(args...)
	if err != nil {
		t.Fatalf("caddy %s: %v\n%s%s", strings.Join(args, " "), err, out, errOut)
	}
	return out
}

// runLLMCommand runs `caddy llm <args...>` in this process, through the command
// Caddy's command line has registered, as Caddy's main would build it.
func runLLMCommand(args ...string) (stdout, stderr string, err error) {
	llm, ok := caddycmd.Commands()["llm"]
	if !ok || len(args) == 0 || args[0] != "llm" {
		return "", "", errors.New("no 'caddy llm' command is registered")
	}
	cmd := &cobra.Command{Use: "llm", SilenceUsage: true, SilenceErrors: true}
	llm.CobraFunc(cmd)
	var o, e bytes.Buffer
	cmd.SetOut(&o)
	cmd.SetErr(&e)
	cmd.SetArgs(args[1:])
	if err = cmd.Execute(); err != nil {
		e.WriteString("Error: " + err.Error())
	}
	return o.String(), e.String(), err
}

// ask makes one chat call to the gateway at url.
func ask(url, key string) error {
	c := llmtest.OpenAI(url, key)
	_, err := c.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{
		Model:    "gpt-4o-mini",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hello")},
	})
	return err
}

// wantRefused waits up to within for the key to be refused with 401 and the
// code, and returns how long that took.
func wantRefused(t *testing.T, url, key, code string, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	deadline := start.Add(within)
	for {
		err := ask(url, key)
		var e *openai.Error
		if errors.As(err, &e) && e.StatusCode == http.StatusUnauthorized && e.Code == code {
			return time.Since(start)
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: got %v, want 401 %s", within, err, code)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

const keySite = `:{PORT} {
	llm_auth {
		database sqlite DB {
			cache_ttl TTL
		}
		static {
			key sk-static-ops {
				user ops
			}
		}
	}
	llm_route {
		model gpt-4o-mini {
			upstream openai {UPSTREAM} ` + llmtest.UpstreamKey + `
		}
	}
}
`

var keyFormat = regexp.MustCompile(`^sk-llm-([a-z2-7]{12})-[A-Z2-7]{52}$`)

// The key management commands as a user runs them, against the SQLite file
// a running gateway uses: create a key, use it with the OpenAI SDK, list
// it, disable, enable and revoke it; the file never holds the secret.
func TestKeyCommands(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "keys.db")
	site := strings.NewReplacer("DB", db, "TTL", "500ms").Replace(keySite)
	g := llmtest.Start(t, nil, site)
	config := filepath.Join(dir, "Caddyfile")
	// The file the gateway would run from.
	file := strings.NewReplacer("{PORT}", g.URL[strings.LastIndexByte(g.URL, ':')+1:], "{UPSTREAM}", g.Upstream).Replace(site)
	if err := os.WriteFile(config, []byte(file), 0o600); err != nil {
		t.Fatal(err)
	}
	store := []string{"--config", config, "--adapter", "caddyfile"}

	key := strings.TrimSpace(llmCommand(t, append([]string{"llm", "key", "create", "--user", "alice", "--team", "research",
		"--models", "gpt-4o-mini,claude-*", "--rpm", "60", "--budget", "20", "--budget-period", "monthly"}, store...)...))
	m := keyFormat.FindStringSubmatch(key)
	if m == nil {
		t.Fatalf("create printed %q, want only a key sk-llm-<id>-<secret>", key)
	}
	id, secret := m[1], key[len("sk-llm-")+13:]
	if err := ask(g.URL, key); err != nil {
		t.Fatalf("the new key: %v", err)
	}
	if up, _ := g.Fake.LastRequest(); strings.Contains(up.Header.Get("Authorization"), secret) {
		t.Fatal("the client key reached the upstream")
	}

	list := llmCommand(t, append([]string{"llm", "key", "list"}, store...)...)
	if !regexp.MustCompile(`(?m)^` + id + `\s+alice\s+research\s+-\s+gpt-4o-mini,claude-\*\s+active\s`).MatchString(list) {
		t.Errorf("list does not show the key as active:\n%s", list)
	}
	var shown map[string]any
	if err := json.Unmarshal([]byte(llmCommand(t, append([]string{"llm", "key", "show", id, "--json"}, store...)...)), &shown); err != nil {
		t.Fatal(err)
	}
	if shown["id"] != id || shown["user"] != "alice" || shown["rpm"] != float64(60) || shown["budget_period"] != "monthly" || shown["status"] != "active" {
		t.Errorf("show --json = %v", shown)
	}

	llmCommand(t, append([]string{"llm", "key", "update", id, "--disable"}, store...)...)
	wantRefused(t, g.URL, key, "api_key_disabled", 2*time.Second)
	llmCommand(t, append([]string{"llm", "key", "update", id, "--enable", "--rpm", "0"}, store...)...)
	deadline := time.Now().Add(2 * time.Second)
	for err := ask(g.URL, key); err != nil; err = ask(g.URL, key) {
		if time.Now().After(deadline) {
			t.Fatalf("enabled again: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}

	// The same store through the config in JSON, and named directly.
	cfg, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(file), nil)
	if err != nil {
		t.Fatal(err)
	}
	jsonConfig := filepath.Join(dir, "caddy.json")
	if err := os.WriteFile(jsonConfig, cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	if out := llmCommand(t, "llm", "key", "list", "--config", jsonConfig); !strings.Contains(out, id) {
		t.Errorf("list --config %s does not show the key:\n%s", jsonConfig, out)
	}
	if out := llmCommand(t, "llm", "key", "revoke", id, "--db", "sqlite:"+db); !regexp.MustCompile(`status:\s+revoked`).MatchString(out) {
		t.Errorf("revoke printed:\n%s", out)
	}
	wantRefused(t, g.URL, key, "api_key_revoked", 2*time.Second)
	if err := ask(g.URL, "sk-static-ops"); err != nil {
		t.Errorf("the static key beside the database: %v", err)
	}

	// Nothing prints the secret again, and the store holds only its hash.
	for _, args := range [][]string{{"list", "--json"}, {"show", id}, {"show", id, "--json"}} {
		if out := llmCommand(t, append(append([]string{"llm", "key"}, args...), store...)...); strings.Contains(out, secret) {
			t.Errorf("%v prints the secret", args)
		}
	}
	var stored []byte
	files, _ := filepath.Glob(db + "*")
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		stored = append(stored, b...)
	}
	sum := sha256.Sum256([]byte(key))
	if !bytes.Contains(stored, []byte(hex.EncodeToString(sum[:]))) {
		t.Fatalf("the key's hash is not in %v: not the gateway's store?", files)
	}
	if bytes.Contains(stored, []byte(secret)) || bytes.Contains(stored, []byte(secret[:16])) {
		t.Errorf("the store %v holds the key's secret", files)
	}
}

func TestKeyCommandErrors(t *testing.T) {
	dir := t.TempDir()
	noDB := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(noDB, []byte(":8080 {\n\tllm_auth {\n\t\tstatic {\n\t\t\tkey k\n\t\t}\n\t}\n}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	db := "sqlite:" + filepath.Join(dir, "k.db")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"llm", "key", "list"}, "say where the keys are"},
		{[]string{"llm", "key", "list", "--db", "mysql://x"}, "is not a store"},
		{[]string{"llm", "key", "list", "--config", noDB}, "no llm_auth in it has a database authenticator"},
		{[]string{"llm", "key", "list", "--config", noDB, "--db", db}, "not both"},
		{[]string{"llm", "key", "show", "nosuchkey000", "--db", db}, "no such key"},
		{[]string{"llm", "key", "create", "--db", db, "--budget-period", "hourly"}, "'hourly' is not a period"},
		{[]string{"llm", "key", "create", "--db", db, "--expires", "soon"}, "is not a time"},
		{[]string{"llm", "key", "update", "x", "--db", db, "--enable", "--disable"}, "contradict"},
	} {
		_, errOut, err := runLLMCommand(tc.args...)
		if err == nil || !strings.Contains(errOut, tc.want) {
			t.Errorf("caddy %s: error %v, stderr %q; want it to fail saying %q", strings.Join(tc.args, " "), err, errOut, tc.want)
		}
	}
}

// The admin API on the same store: a change through it takes effect on
// this instance at once, however long the cache time.
func TestKeyAdminAPI(t *testing.T) {
	db := filepath.Join(t.TempDir(), "keys.db")
	g := llmtest.Start(t, nil, strings.NewReplacer("DB", db, "TTL", "1h").Replace(keySite))
	admin := func(method, path, body string, want int) map[string]any {
		t.Helper()
		req, err := http.NewRequest(method, g.AdminURL+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out any
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
			t.Fatalf("%s %s: body is not JSON: %v", method, path, err)
		}
		if resp.StatusCode != want {
			t.Fatalf("%s %s: status %d, want %d: %v", method, path, resp.StatusCode, want, out)
		}
		if m, ok := out.(map[string]any); ok {
			return m
		}
		return map[string]any{"list": out}
	}

	created := admin("POST", "/llm/keys", `{"user": "bob", "models": ["gpt-4o-mini"], "tpm": 1000000, "expires_at": "90d"}`, http.StatusCreated)
	key, _ := created["key"].(string)
	id, _ := created["id"].(string)
	if m := keyFormat.FindStringSubmatch(key); m == nil || m[1] != id {
		t.Fatalf("POST answered %v, want the key once with its id", created)
	}
	if created["user"] != "bob" || created["tpm"] != float64(1000000) || created["status"] != "active" || created["expires_at"] == nil {
		t.Errorf("POST answered %v", created)
	}
	if err := ask(g.URL, key); err != nil {
		t.Fatalf("the new key: %v", err)
	}
	// No body: a key with no settings.
	if bare := admin("POST", "/llm/keys", "", http.StatusCreated); bare["user"] != nil || bare["models"] != nil || bare["status"] != "active" {
		t.Errorf("POST without a body answered %v", bare)
	}

	list := admin("GET", "/llm/keys?user=bob", "", http.StatusOK)["list"].([]any)
	if len(list) != 1 || list[0].(map[string]any)["id"] != id {
		t.Errorf("GET /llm/keys?user=bob = %v", list)
	}
	if got := admin("GET", "/llm/keys?user=nobody", "", http.StatusOK)["list"].([]any); len(got) != 0 {
		t.Errorf("GET /llm/keys?user=nobody = %v", got)
	}
	one := admin("GET", "/llm/keys/"+id, "", http.StatusOK)
	for _, v := range append(list, one) {
		if _, has := v.(map[string]any)["key"]; has {
			t.Errorf("GET shows the key: %v", v)
		}
	}

	if got := admin("PATCH", "/llm/keys/"+id, `{"disabled": true}`, http.StatusOK); got["status"] != "disabled" {
		t.Errorf("PATCH disabled answered %v", got)
	}
	wantRefused(t, g.URL, key, "api_key_disabled", 0)
	admin("PATCH", "/llm/keys/"+id, `{"disabled": false}`, http.StatusOK)
	if err := ask(g.URL, key); err != nil {
		t.Fatalf("enabled again: %v", err)
	}
	if got := admin("DELETE", "/llm/keys/"+id, "", http.StatusOK); got["status"] != "revoked" {
		t.Errorf("DELETE answered %v", got)
	}
	wantRefused(t, g.URL, key, "api_key_revoked", 0)

	for _, tc := range []struct {
		method, path, body string
		status             int
		says               string
	}{
		{"GET", "/llm/keys/nosuchkey000", "", http.StatusNotFound, "no such key"},
		{"PATCH", "/llm/keys/" + id, `{"rpm": -1}`, http.StatusBadRequest, "rpm must not be negative"},
		{"POST", "/llm/keys", `{"colour": "red"}`, http.StatusBadRequest, "colour"},
		{"POST", "/llm/keys", `{"budget_period": "hourly"}`, http.StatusBadRequest, "'hourly' is not a period"},
		{"PUT", "/llm/keys/" + id, `{}`, http.StatusMethodNotAllowed, "not a key operation"},
		{"POST", "/llm/keys/" + id, `{}`, http.StatusMethodNotAllowed, "not a key operation"},
		{"GET", "/llm/keys?store=elsewhere", "", http.StatusNotFound, "no key store 'elsewhere'"},
	} {
		got := admin(tc.method, tc.path, tc.body, tc.status)
		if msg, _ := got["error"].(string); !strings.Contains(msg, tc.says) {
			t.Errorf("%s %s: error %v, want it to say %q", tc.method, tc.path, got, tc.says)
		}
	}

	// Two stores: the API asks which; without a database, it says so.
	other := filepath.Join(filepath.Dir(db), "other.db")
	g.Load(strings.Replace(strings.NewReplacer("DB", db, "TTL", "1h").Replace(keySite), "static {", "database sqlite "+other+"\n\t\tstatic {", 1))
	if got, _ := admin("GET", "/llm/keys", "", http.StatusBadRequest)["error"].(string); !strings.Contains(got, "several key stores") ||
		!strings.Contains(got, "sqlite:"+db) || !strings.Contains(got, "sqlite:"+other) {
		t.Errorf("two stores: error %q should name both", got)
	}
	if got := admin("GET", "/llm/keys?store=sqlite:"+db, "", http.StatusOK)["list"].([]any); len(got) != 2 {
		t.Errorf("GET ?store=sqlite:%s listed %d keys, want 2", db, len(got))
	}
	g.Load(strings.Replace(keySite, "database sqlite DB {\n\t\t\tcache_ttl TTL\n\t\t}\n", "", 1))
	if got, _ := admin("GET", "/llm/keys", "", http.StatusNotFound)["error"].(string); !strings.Contains(got, "no database authenticator") {
		t.Errorf("no database: error %q", got)
	}
}

// postgresTable is a key table of the test's own in the machine's
// PostgreSQL, dropped after it, and the key site using it.
func postgresTable(t *testing.T, ttl string) (db *sqldb.DB, table, site string) {
	table = "llm_keys_e2e_" + strings.ToLower(rand.Text()[:10])
	db, err := sqldb.Open(context.Background(), sqldb.Postgres, llmtest.PostgresDSN)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx := context.Background()
		for _, q := range []string{`DROP TABLE IF EXISTS ` + table, `DELETE FROM llm_schema_migrations WHERE component = 'auth_keys:` + table + `'`} {
			if _, err := db.ExecContext(ctx, q); err != nil {
				t.Errorf("%s: %v", q, err)
			}
		}
		sqldb.Release(db)
	})
	site = strings.Replace(keySite, "database sqlite DB {", "database postgres "+llmtest.PostgresDSN+" {\n\t\t\ttable "+table, 1)
	return db, table, strings.Replace(site, "TTL", ttl, 1)
}

// The same against PostgreSQL, in a table of the test's own.
func TestKeyCommandsPostgres(t *testing.T) {
	db, table, site := postgresTable(t, "200ms")
	g := llmtest.Start(t, nil, site)
	store := []string{"--db", llmtest.PostgresDSN, "--table", table}

	key := strings.TrimSpace(llmCommand(t, append([]string{"llm", "key", "create", "--user", "carol", "--expires", "2099-01-01"}, store...)...))
	m := keyFormat.FindStringSubmatch(key)
	if m == nil {
		t.Fatalf("create printed %q", key)
	}
	if err := ask(g.URL, key); err != nil {
		t.Fatalf("the new key: %v", err)
	}
	var listed []map[string]any
	if err := json.Unmarshal([]byte(llmCommand(t, append([]string{"llm", "key", "list", "--json"}, store...)...)), &listed); err != nil {
		t.Fatal(err)
	}
	if len(listed) != 1 || listed[0]["id"] != m[1] || listed[0]["expires_at"] != "2099-01-01T00:00:00Z" {
		t.Errorf("list --json = %v", listed)
	}
	llmCommand(t, append([]string{"llm", "key", "revoke", m[1]}, store...)...)
	wantRefused(t, g.URL, key, "api_key_revoked", 2*time.Second)
	var row string
	if err := db.QueryRowContext(context.Background(), `SELECT CONCAT_WS('|', id, key_hash, user_name, team, name, models) FROM `+table).Scan(&row); err != nil {
		t.Fatal(err)
	}
	if secret := key[len("sk-llm-")+13:]; strings.Contains(row, secret[:16]) || !strings.Contains(row, m[1]) {
		t.Errorf("the row %q holds the secret, or is not the key's", row)
	}
}

// A database key's limits reach llm_auth's checks, and a change through
// the admin API applies to the next request.
func TestDatabaseKeyLimits(t *testing.T) {
	db := filepath.Join(t.TempDir(), "keys.db")
	g := llmtest.Start(t, nil, strings.NewReplacer("DB", db, "TTL", "1h").Replace(keySite))
	req, _ := http.NewRequest("POST", g.AdminURL+"/llm/keys", strings.NewReader(`{"user": "dana", "rpm": 2}`))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var created struct{ ID, Key string }
	if err := json.NewDecoder(resp.Body).Decode(&created); err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST /llm/keys: %d, %v", resp.StatusCode, err)
	}
	resp.Body.Close()
	for i := range 2 {
		if err := ask(g.URL, created.Key); err != nil {
			t.Fatalf("request %d of 2 a minute: %v", i+1, err)
		}
	}
	var e *openai.Error
	if err := ask(g.URL, created.Key); !errors.As(err, &e) || e.StatusCode != http.StatusTooManyRequests || e.Code != "rate_limit_exceeded" {
		t.Fatalf("request 3 of 2 a minute: %v, want 429 rate_limit_exceeded", err)
	}
	req, _ = http.NewRequest("PATCH", g.AdminURL+"/llm/keys/"+created.ID, strings.NewReader(`{"rpm": 3}`))
	if resp, err = http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("PATCH: %v %v", resp, err)
	}
	resp.Body.Close()
	if err := ask(g.URL, created.Key); err != nil {
		t.Fatalf("request 3 of 3 a minute: %v", err)
	}
}

// Two gateways, this process and a child, share a PostgreSQL key table: a
// key revoked through one's admin API is refused there at once, and by the
// other within its cache_ttl.
func TestDatabaseFleetRevoke(t *testing.T) {
	const ttl = time.Second
	_, _, site := postgresTable(t, ttl.String())
	g := llmtest.Start(t, nil, site)
	other := g.StartProcess(t, site)
	req, _ := http.NewRequest("POST", g.AdminURL+"/llm/keys", strings.NewReader(`{"user": "erin"}`))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var created struct{ ID, Key string }
	if err := json.NewDecoder(resp.Body).Decode(&created); err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST /llm/keys: %d, %v", resp.StatusCode, err)
	}
	resp.Body.Close()
	for _, url := range []string{g.URL, other.URL} {
		if err := ask(url, created.Key); err != nil {
			t.Fatalf("the new key at %s: %v", url, err)
		}
	}
	cached := time.Now() // the other instance trusts the key until about cached+ttl

	req, _ = http.NewRequest("DELETE", g.AdminURL+"/llm/keys/"+created.ID, nil)
	if resp, err = http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("DELETE: %v %v", resp, err)
	}
	resp.Body.Close()
	revoked := time.Now()
	wantRefused(t, g.URL, created.Key, "api_key_revoked", 0) // the very next request
	took := wantRefused(t, other.URL, created.Key, "api_key_revoked", 3*ttl)
	// The slack is for one request and the polling, on a busy machine.
	if bound := ttl - revoked.Sub(cached) + 500*time.Millisecond; took > bound {
		t.Errorf("the other instance refused the key %v after the revocation, want within %v", took, bound)
	}
	t.Logf("revoked key refused by the other instance %v after the revocation (cache_ttl %v)", took.Round(time.Millisecond), ttl)
}
