package stats

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
)

func TestUnmarshalCaddyfile(t *testing.T) {
	for _, tt := range []struct {
		name, input, want string
	}{
		{"bare", `llm_stats`, `{}`},
		{"empty block", "llm_stats {\n}", `{}`},
		{"everything", `llm_stats {
			queue_size 10000
			log
			log {
				level debug
			}
			log warn
			testrec a b {
				fail
			}
		}`, `{"recorders":[` +
			`{"recorder":"log"},` +
			`{"level":"debug","recorder":"log"},` +
			`{"level":"warn","recorder":"log"},` +
			`{"args":["a","b"],"fail":true,"recorder":"testrec"}` +
			`],"queue_size":10000}`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := new(Handler)
			if err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tt.input)); err != nil {
				t.Fatal(err)
			}
			if got := string(caddyconfig.JSON(h, nil)); got != tt.want {
				t.Errorf("JSON =\n%s\nwant\n%s", got, tt.want)
			}
		})
	}
}

func TestUnmarshalCaddyfileErrors(t *testing.T) {
	for _, tt := range []struct {
		input, want string
	}{
		{"llm_stats {\n\tnope\n}", "unknown llm_stats subdirective 'nope': it is not an option, and no recorder module llm.stats.nope is installed, at Testfile:2"},
		{"llm_stats {\n\tqueue_size abc\n}", "bad queue_size 'abc'"},
		{"llm_stats {\n\tqueue_size 0\n}", "bad queue_size '0'"},
		{"llm_stats {\n\tqueue_size -5\n}", "bad queue_size '-5'"},
		{"llm_stats {\n\tqueue_size\n}", "wrong argument count"},
		{"llm_stats {\n\tqueue_size 1 2\n}", "wrong argument count"},
		{"llm_stats extra", "wrong argument count"},
		{"llm_stats {\n\tlog {\n\t\tlevel loud\n\t}\n}", "unknown log level 'loud'"},
		{"llm_stats {\n\tlog loud\n}", "unknown log level 'loud'"},
		{"llm_stats {\n\tlog {\n\t\tlevel\n\t}\n}", "wrong argument count"},
		{"llm_stats {\n\tlog debug info\n}", "wrong argument count"},
		{"llm_stats {\n\tlog {\n\t\tcolour red\n\t}\n}", "unrecognized log recorder subdirective 'colour'"},
		{"llm_stats {\n\ttestrec {\n\t\tbogus\n\t}\n}", "unrecognized testrec subdirective 'bogus'"},
	} {
		t.Run(tt.input, func(t *testing.T) {
			err := new(Handler).UnmarshalCaddyfile(caddyfile.NewTestDispenser(tt.input))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

// TestParseCaddyfileProvisions checks that what the Caddyfile produces is a
// config the handler accepts.
func TestParseCaddyfileProvisions(t *testing.T) {
	d := caddyfile.NewTestDispenser("llm_stats {\n\tqueue_size 8\n\tlog info\n\ttestrec\n}")
	mh, err := ParseCaddyfile(httpcaddyfile.Helper{Dispenser: d})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	mod, err := ctx.LoadModuleByID("http.handlers.llm_stats", caddyconfig.JSON(mh, nil))
	if err != nil {
		t.Fatal(err)
	}
	h := mod.(*Handler)
	if len(h.workers) != 2 || h.workers[0].name != "log" || h.workers[1].name != "testrec" || cap(h.workers[0].queue) != 8 {
		t.Errorf("provisioned %d workers: %+v", len(h.workers), h.workers)
	}
}

func FuzzUnmarshalCaddyfile(f *testing.F) {
	for _, seed := range []string{
		"llm_stats",
		"llm_stats {\n\tqueue_size 10\n\tlog\n}",
		"llm_stats {\n\tlog {\n\t\tlevel debug\n\t}\n\ttestrec a b {\n\t\tfail\n\t}\n}",
		"llm_stats {\n\tlog {\n\t\tlevel\n\t}\n}",
		"llm_stats {\n\tqueue_size\n}",
		"llm_stats { { } }",
		"llm_stats {\n\tmemory {\n\t\tmax_groups 5\n\t}\n\tprometheus {\n\t\tlabels user key\n\t}\n}",
		"llm_stats {\n\tredis redis://127.0.0.1:6379/0 {\n\t\tttl 90d\n\t\tprefix p\n\t}\n}",
		"llm_stats {\n\tdatabase sqlite ./u.db {\n\t\tspool_size 10MB\n\t\tretention 30d\n\t\tbatch_size 9\n\t}\n}",
		"llm_stats {\n\tdatabase postgres://u@h/db\n}",
		"{\n}\n",
		"",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, input string) {
		tokens, err := caddyfile.Tokenize([]byte(input), "Caddyfile")
		if err != nil {
			return // not a Caddyfile at all: nothing for the parser to see
		}
		h := new(Handler)
		if err := h.UnmarshalCaddyfile(caddyfile.NewDispenser(tokens)); err != nil {
			return
		}
		// Whatever parses must encode to JSON the handler decodes again.
		var back Handler
		if err := json.Unmarshal(caddyconfig.JSON(h, nil), &back); err != nil {
			t.Errorf("parsed config does not round-trip through JSON: %v", err)
		}
	})
}
