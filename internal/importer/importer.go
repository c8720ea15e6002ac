// Package importer is `caddy llm import`: it turns an LLM One API (the
// Python gateway) config.yaml into a Caddyfile, and says what it could not
// carry over.
package importer

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"

	"github.com/llmoneapi/llmoneapi/internal/llmcmd"
	"github.com/llmoneapi/llmoneapi/route"
)

func init() {
	llmcmd.Add(command)
}

func command() *cobra.Command {
	var output, envfile string
	cmd := &cobra.Command{
		Use:   "import <config.yaml>",
		Short: "Turns an LLM One API config.yaml into a Caddyfile",
		Long: `
Reads an LLM One API config.yaml (models, static api_keys, rate_limit, stats
plugins, server) and prints a Caddyfile that does the same, or writes it with
--output. What cannot be carried over is listed on standard error. Upstream
keys written literally in the YAML become {env.NAME} placeholders; --envfile
writes their values to a file (mode 0600) for 'caddy run --envfile'.
`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			data, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			res, err := Convert(data)
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			if envfile != "" {
				if err := os.WriteFile(envfile, []byte(res.EnvFile()), 0o600); err != nil {
					return err
				}
			}
			if output != "" {
				if err := os.WriteFile(output, []byte(res.Caddyfile), 0o644); err != nil {
					return err
				}
			} else {
				fmt.Fprint(cmd.OutOrStdout(), res.Caddyfile)
			}
			for _, n := range res.Notes {
				fmt.Fprintln(cmd.ErrOrStderr(), "note: "+n)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "write the Caddyfile to this file instead of standard output")
	cmd.Flags().StringVar(&envfile, "envfile", "", "write the upstream keys found in the YAML to this file, as NAME=value lines")
	return cmd
}

// Result is an imported config.
type Result struct {
	// Caddyfile is the config, for the caddyfile adapter.
	Caddyfile string
	// Notes say what was not carried over, or how, one per line.
	Notes []string
	// Env holds the upstream keys found literally in the YAML, by the
	// environment variable the Caddyfile reads them from.
	Env map[string]string
}

// EnvFile returns Env as NAME=value lines, sorted.
func (r Result) EnvFile() string {
	names := make([]string, 0, len(r.Env))
	for n := range r.Env {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	for _, n := range names {
		b.WriteString(n + "=" + r.Env[n] + "\n")
	}
	return b.String()
}

type pythonConfig struct {
	Host   string `yaml:"host"`
	Port   int    `yaml:"port"`
	Server struct {
		Host     string `yaml:"host"`
		Port     int    `yaml:"port"`
		Workers  int    `yaml:"workers"`
		LogLevel string `yaml:"log_level"`
	} `yaml:"server"`
	Plugins struct {
		Auth  string `yaml:"auth"`
		Stats any    `yaml:"stats"`
	} `yaml:"plugins"`
	Auth map[string]struct {
		APIKeys []string `yaml:"api_keys"`
	} `yaml:"auth"`
	Stats     map[string]map[string]any `yaml:"stats"`
	RateLimit struct {
		Enabled           bool   `yaml:"enabled"`
		RequestsPerMinute *int   `yaml:"requests_per_minute"`
		DefaultLimit      string `yaml:"default_limit"`
		ByUser            bool   `yaml:"by_user"`
	} `yaml:"rate_limit"`
}

var envRef = regexp.MustCompile(`^\{env\.[A-Za-z_][A-Za-z0-9_]*\}$`)

// Convert turns an LLM One API config.yaml into a Caddyfile.
func Convert(data []byte) (Result, error) {
	var cfg pythonConfig
	if err := yaml.Unmarshal(data, &cfg); err != nil {
		return Result{}, err
	}
	models, notes, err := route.DecodeModels(data)
	if err != nil {
		return Result{}, err
	}
	res := Result{Notes: notes, Env: map[string]string{}}
	var b strings.Builder
	w := func(depth int, format string, args ...any) {
		b.WriteString(strings.Repeat("\t", depth) + fmt.Sprintf(format, args...) + "\n")
	}

	// The site.
	host, port := cfg.Server.Host, cfg.Server.Port
	if host == "" {
		host = cfg.Host
	}
	if port == 0 {
		port = cfg.Port
	}
	if port == 0 {
		port = 8000
	}
	if cfg.Server.Workers > 0 {
		res.Notes = append(res.Notes, "server.workers is not needed: Caddy uses every core")
	}
	if cfg.Server.LogLevel != "" {
		res.Notes = append(res.Notes, fmt.Sprintf("server.log_level %s: set Caddy's level in the global options, e.g. { log { level %s } }", cfg.Server.LogLevel, caddyLevel(cfg.Server.LogLevel)))
	}
	w(0, "# Imported from an LLM One API config.yaml by 'caddy llm import'.")
	w(0, ":%d {", port)
	if host != "" && host != "0.0.0.0" {
		w(1, "bind %s", host)
	}
	w(1, "# LLM One API answered /health without a key.")
	w(1, "handle /health {")
	w(2, "respond `{\"status\":\"healthy\"}` 200")
	w(1, "}")
	w(1, "handle {")

	// Stats.
	stats := []string{"log"}
	switch s := cfg.Plugins.Stats.(type) {
	case string:
		stats = []string{s}
	case []any:
		stats = stats[:0]
		for _, v := range s {
			stats = append(stats, fmt.Sprint(v))
		}
	}
	var recorders []string
	for _, s := range stats {
		switch s {
		case "log":
			recorders = append(recorders, "log")
			if f, _ := cfg.Stats["log"]["format"].(string); f == "text" {
				res.Notes = append(res.Notes, "stats.log.format text: llm.stats.log writes structured lines; choose their format with Caddy's log options (format console)")
			}
		case "memory":
			recorders = append(recorders, "memory")
			if _, ok := cfg.Stats["memory"]["max_records"]; ok {
				res.Notes = append(res.Notes, "stats.memory.max_records: the memory recorder keeps aggregates, not a list of records")
			}
		default:
			res.Notes = append(res.Notes, fmt.Sprintf("stats plugin '%s' has no built-in counterpart: write it as an llm.stats module", s))
		}
	}
	if len(recorders) > 0 {
		w(2, "llm_stats {")
		for _, r := range recorders {
			w(3, "%s", r)
		}
		w(2, "}")
	}

	// Client keys.
	plugin := cfg.Plugins.Auth
	if plugin == "" {
		plugin = "default_auth"
	}
	rpm := 0
	if cfg.RateLimit.Enabled {
		rpm = 60
		if cfg.RateLimit.RequestsPerMinute != nil {
			rpm = *cfg.RateLimit.RequestsPerMinute
		} else if n, ok := strings.CutSuffix(cfg.RateLimit.DefaultLimit, "/minute"); ok {
			if v, err := strconv.Atoi(n); err == nil {
				rpm = v
				res.Notes = append(res.Notes, "rate_limit.default_limit: LLM One API did not apply it (it read requests_per_minute); it is carried over as rpm")
			}
		}
		res.Notes = append(res.Notes, fmt.Sprintf("rate_limit: %d requests per minute now count per key (LLM One API counted per client address in effect)", rpm))
	}
	keys := cfg.Auth[plugin].APIKeys
	switch {
	case plugin != "default_auth" && plugin != "simple":
		res.Notes = append(res.Notes, fmt.Sprintf("auth plugin '%s' has no built-in counterpart: write it as an llm.auth module; no llm_auth was written, so the gateway is open", plugin))
	case len(keys) == 0:
		res.Notes = append(res.Notes, "no api_keys: LLM One API refused every request; no llm_auth was written, so the gateway is open")
	default:
		w(2, "llm_auth {")
		w(3, "static {")
		for i, k := range keys {
			ref := route.EnvPlaceholders(k)
			if !envRef.MatchString(ref) {
				sum := sha256.Sum256([]byte(k))
				ref = "sha256:" + hex.EncodeToString(sum[:])
			}
			w(4, "# api_keys[%d]", i)
			if rpm > 0 {
				w(4, "key %s {", ref)
				w(5, "rpm %d", rpm)
				w(4, "}")
			} else {
				w(4, "key %s", ref)
			}
		}
		w(3, "}")
		w(2, "}")
		res.Notes = append(res.Notes, "client keys are written as their SHA-256: clients keep their keys; LLM One API's user_id (a key's first 10 characters) is not carried over, set 'user' per key")
	}

	// Models.
	keyVars := map[string]string{}
	w(2, "llm_route {")
	for _, m := range models {
		w(3, "model %s {", m.Name)
		for i, u := range m.Upstreams {
			var p struct{ Name string }
			_ = json.Unmarshal(u.ProviderRaw, &p)
			key := u.APIKey
			if key != "" && !envRef.MatchString(key) {
				name, ok := keyVars[key]
				if !ok {
					name = envName(m.Name, i, len(m.Upstreams))
					for res.Env[name] != "" {
						name += "_X"
					}
					keyVars[key], res.Env[name] = name, key
					res.Notes = append(res.Notes, fmt.Sprintf("model '%s' upstream %d: its api_key is read from the environment variable %s (set it, or use --envfile)", m.Name, i+1, name))
				}
				key = "{env." + name + "}"
			}
			line := fmt.Sprintf("upstream %s %s %s", p.Name, u.URL, key)
			var opts []string
			if u.Weight > 0 {
				opts = append(opts, fmt.Sprintf("weight %d", u.Weight))
			}
			if u.Timeout > 0 {
				opts = append(opts, "timeout "+secs(time.Duration(u.Timeout)))
			}
			if len(opts) == 0 {
				w(4, "%s", strings.TrimSpace(line))
				continue
			}
			w(4, "%s {", strings.TrimSpace(line))
			for _, o := range opts {
				w(5, "%s", o)
			}
			w(4, "}")
		}
		if m.PolicyRaw != nil {
			var p struct{ Policy string }
			_ = json.Unmarshal(m.PolicyRaw, &p)
			w(4, "lb_policy %s", p.Policy)
		}
		if m.Retries != nil {
			w(4, "lb_retries %d", *m.Retries)
		}
		if m.MaxFails > 0 {
			w(4, "max_fails %d", m.MaxFails)
		}
		if m.HealthInterval > 0 {
			w(4, "health_interval %s", secs(time.Duration(m.HealthInterval)))
		}
		if m.Price != nil {
			w(4, "price %s %s", num(m.Price.Input), num(m.Price.Output))
		}
		w(3, "}")
	}
	w(2, "}")
	w(1, "}")
	w(0, "}")
	res.Notes = append(res.Notes, "LLM One API's GET /v1/stats is GET /llm/stats on Caddy's admin endpoint")
	res.Caddyfile = b.String()
	return res, nil
}

// envName names the environment variable of a model's upstream key.
func envName(model string, i, n int) string {
	name := strings.ToUpper(regexp.MustCompile(`[^A-Za-z0-9]+`).ReplaceAllString(model, "_")) + "_API_KEY"
	if n > 1 {
		name += "_" + strconv.Itoa(i+1)
	}
	return "LLM_" + strings.Trim(name, "_")
}

func secs(d time.Duration) string { return strconv.FormatFloat(d.Seconds(), 'f', -1, 64) + "s" }

func num(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }

func caddyLevel(l string) string {
	switch strings.ToLower(l) {
	case "warning":
		return "WARN"
	case "critical":
		return "ERROR"
	}
	return strings.ToUpper(l)
}
