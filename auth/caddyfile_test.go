package auth

import (
	"encoding/json"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
)

const exampleCaddyfile = `llm_auth {
	max_body_size 10MB
	static {
		key sk-team-alice {
			user alice
		}
		key sk-team-bob {
			user bob
			models gpt-4o-mini text-embedding-*
		}
		key sha256:5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8 {
			id ops-key
			user ops
		}
		key {env.LLMONEAPI_TEST_TEAM_KEY}
	}
	fake {
		user sk-fake frank
	}
}`

const exampleJSON = `{
	"max_body_size": 10000000,
	"authenticators": [
		{"source": "static", "keys": [
			{"key": "sk-team-alice", "user": "alice"},
			{"key": "sk-team-bob", "user": "bob", "models": ["gpt-4o-mini", "text-embedding-*"]},
			{"key": "sha256:5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8", "id": "ops-key", "user": "ops"},
			{"key": "{env.LLMONEAPI_TEST_TEAM_KEY}"}
		]},
		{"source": "fake", "users": {"sk-fake": "frank"}}
	]
}`

func adapt(t *testing.T, src string) (*Handler, error) {
	t.Helper()
	h := new(Handler)
	return h, h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(src))
}

func sameJSON(t *testing.T, got, want []byte) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("bad JSON %s: %v", got, err)
	}
	if err := json.Unmarshal(want, &w); err != nil {
		t.Fatalf("bad JSON %s: %v", want, err)
	}
	if !reflect.DeepEqual(g, w) {
		t.Errorf("JSON =\n%s\nwant\n%s", got, want)
	}
}

func TestCaddyfile(t *testing.T) {
	h, err := adapt(t, exampleCaddyfile)
	if err != nil {
		t.Fatal(err)
	}
	sameJSON(t, caddyconfig.JSON(h, nil), []byte(exampleJSON))
}

func TestCaddyfileSizes(t *testing.T) {
	for src, want := range map[string]int64{
		"1024":  1024,
		"10KB":  10000,
		"8MiB":  8 << 20,
		"1GB":   1000000000,
		"2 GiB": 2 << 30,
	} {
		h, err := adapt(t, "llm_auth {\nmax_body_size \""+src+"\"\nstatic {\nkey k\n}\n}")
		if err != nil {
			t.Errorf("%s: %v", src, err)
			continue
		}
		if h.MaxBodySize != want {
			t.Errorf("max_body_size %s = %d, want %d", src, h.MaxBodySize, want)
		}
	}
}

// The Caddyfile's JSON loads and works: what a user of the Caddyfile gets.
func TestCaddyfileLoads(t *testing.T) {
	t.Setenv("LLMONEAPI_TEST_TEAM_KEY", "sk-from-env")
	ph, err := ParseCaddyfile(httpcaddyfile.Helper{Dispenser: caddyfile.NewTestDispenser(exampleCaddyfile)})
	if err != nil {
		t.Fatal(err)
	}
	h := mustLoad(t, string(caddyconfig.JSON(ph, nil)))
	for key, status := range map[string]int{
		"sk-team-alice": http.StatusOK,
		"password":      http.StatusOK,
		"sk-from-env":   http.StatusOK,
		"sk-fake":       http.StatusOK,
		"sk-unknown":    http.StatusUnauthorized,
	} {
		if w := serve(t, h, withKey(chat("gpt-4o"), key), nil); w.Code != status {
			t.Errorf("key %s: status %d, want %d; body %s", key, w.Code, status, w.Body)
		}
	}
	if w := serve(t, h, withKey(chat("text-embedding-3-large"), "sk-team-bob"), nil); w.Code != http.StatusOK {
		t.Errorf("bob's glob scope: status %d, body %s", w.Code, w.Body)
	}
	if w := serve(t, h, withKey(chat("gpt-4o"), "sk-team-bob"), nil); w.Code != http.StatusForbidden {
		t.Errorf("bob outside his scope: status %d, body %s", w.Code, w.Body)
	}
}

func TestCaddyfileErrors(t *testing.T) {
	for _, tc := range []struct{ src, want string }{
		{"llm_auth extra", "wrong argument count"},
		{"llm_auth {\nnope\n}", "unknown llm_auth subdirective 'nope': it is not an option, and no authenticator module llm.auth.nope is installed, at Testfile:2"},
		{"llm_auth {\nmax_body_size\n}", "wrong argument count"},
		{"llm_auth {\nmax_body_size 1 2\n}", "wrong argument count"},
		{"llm_auth {\nmax_body_size lots\n}", "max_body_size: 'lots' is not a size such as 10MB"},
		{"llm_auth {\nmax_body_size 100EB\n}", "max_body_size: '100EB' is not a size"},
		{"llm_auth {\nstatic extra\n}", "wrong argument count"},
		{"llm_auth {\nstatic {\nuser bob\n}\n}", "unrecognized static subdirective 'user', at Testfile:3"},
		{"llm_auth {\nstatic {\nkey\n}\n}", "'key' needs the key"},
		{"llm_auth {\nstatic {\nkey sk-one sk-two\n}\n}", "'key' takes one argument"},
		{"llm_auth {\nstatic {\nkey k {\ncolour red\n}\n}\n}", "unrecognized static key subdirective 'colour', at Testfile:4"},
		{"llm_auth {\nstatic {\nkey k {\nmodels\n}\n}\n}", "wrong argument count"},
		{"llm_auth {\nstatic {\nkey k {\nuser a b\n}\n}\n}", "wrong argument count"},
		{"llm_auth {\nstatic {\nkey k {\nid\n}\n}\n}", "wrong argument count"},
	} {
		_, err := adapt(t, tc.src)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want %q", tc.src, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "sk-") {
			t.Errorf("%q: error %v quotes a key", tc.src, err)
		}
	}
}

func TestCaddyfileIDSecret(t *testing.T) {
	h, err := adapt(t, "llm_auth {\nstatic {\nid_secret {env.KEY_ID_SECRET}\nkey k\n}\n}")
	if err != nil {
		t.Fatal(err)
	}
	sameJSON(t, caddyconfig.JSON(h, nil), []byte(`{"authenticators": [{"source": "static", "id_secret": "{env.KEY_ID_SECRET}", "keys": [{"key": "k"}]}]}`))
	for src, want := range map[string]string{
		"llm_auth {\nstatic {\nid_secret\nkey k\n}\n}":               "'id_secret' needs the secret",
		"llm_auth {\nstatic {\nid_secret sk-one sk-two\nkey k\n}\n}": "'id_secret' takes one argument",
	} {
		if _, err := adapt(t, src); err == nil || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "sk-") {
			t.Errorf("%q: error %v, want %q without the secret", src, err, want)
		}
	}
}

func TestCaddyfileRepeatedModels(t *testing.T) {
	h, err := adapt(t, "llm_auth {\nstatic {\nkey k {\nmodels a b\nmodels c\n}\n}\n}")
	if err != nil {
		t.Fatal(err)
	}
	sameJSON(t, caddyconfig.JSON(h, nil), []byte(`{"authenticators": [{"source": "static", "keys": [{"key": "k", "models": ["a", "b", "c"]}]}]}`))
}

func FuzzUnmarshalCaddyfile(f *testing.F) {
	for _, seed := range []string{
		exampleCaddyfile,
		limitsCaddyfile,
		"llm_auth",
		"llm_auth {\nmax_body_size 1KiB\n}",
		"llm_auth {\nstatic {\nkey k {\nmodels a* b?\n}\n}\n}",
		"llm_auth {\nstatic {\nkey\n}\n}",
		"llm_auth {\nfake {\nfail x\n}\n}",
		"llm_auth {\ndatabase sqlite ./k.db {\ntable t\ncache_ttl 1s\nnegative_cache_ttl 1s\n}\nstatic {\nid_secret s\nkey k\n}\n}",
		"llm_auth {\ndatabase postgres://u@h/db\n}",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, src string) {
		tokens, err := caddyfile.Tokenize([]byte(src), "Caddyfile")
		if err != nil {
			return // not a Caddyfile at all: nothing for the parser to see
		}
		h := new(Handler)
		if h.UnmarshalCaddyfile(caddyfile.NewDispenser(tokens)) == nil {
			// What parsed must encode.
			if _, err := json.Marshal(h); err != nil {
				t.Fatalf("parsed %q but cannot encode it: %v", src, err)
			}
		}
	})
}
