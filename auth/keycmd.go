package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	"github.com/llmoneapi/llmoneapi/internal/llmcmd"
	"github.com/llmoneapi/llmoneapi/internal/sqldb"
	"github.com/llmoneapi/llmoneapi/llm"
)

func init() {
	llmcmd.Add(keyCommand)
}

// keyCommand is `caddy llm key`: the key management of database
// authenticators, straight on their store, with or without a running Caddy.
func keyCommand() *cobra.Command {
	key := &cobra.Command{
		Use:   "key",
		Short: "Creates, lists, shows, changes and revokes the API keys of a database authenticator",
		Long: `
Manages the keys of an llm_auth database authenticator, in its SQLite file or
PostgreSQL database. Point the command at the store with the config that
names it (--config, and --adapter unless the file is JSON or is named
Caddyfile), or directly with --db sqlite:<path> or --db postgres://...

'create' prints the new key once, on standard output; nothing shows it again,
since the store keeps only its SHA-256. Every other command names keys by
their public id, the part after 'sk-llm-'.

A running gateway sees a change made here within its cache_ttl (30s by
default); a change through its admin API (/llm/keys) takes effect on that
instance at once.
`,
	}
	key.PersistentFlags().StringP("config", "c", "", "The Caddy config whose llm_auth database authenticator holds the keys")
	key.PersistentFlags().StringP("adapter", "a", "", "The adapter of the config (e.g. caddyfile)")
	key.PersistentFlags().String("db", "", "The store itself: sqlite:<path> or postgres://<user>@<host>/<db>")
	key.PersistentFlags().String("table", "", "The table of keys, with --db (default "+defaultKeyTable+")")
	key.PersistentFlags().Bool("json", false, "Print JSON instead of text")

	create := &cobra.Command{
		Use:   "create [--user <user>] [--models <pattern,...>] [--rpm <n>] [--budget <usd> --budget-period monthly] [--expires 90d] ...",
		Short: "Creates a key and prints it, this once",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := changeFromFlags(cmd.Flags())
			if err != nil {
				return err
			}
			return withKeyTable(cmd, func(ctx context.Context, t *keyTable) error {
				k, key, err := t.Create(ctx, c)
				if err != nil {
					return err
				}
				if asJSON(cmd) {
					v := viewOf(k, time.Now())
					v.Key = key
					return printJSON(cmd.OutOrStdout(), v)
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "Created key %s. It is shown only now; store it safely:\n", k.ID)
				_, err = fmt.Fprintln(cmd.OutOrStdout(), key)
				return err
			})
		},
	}
	changeFlags(create.Flags())

	list := &cobra.Command{
		Use:   "list [--user <user>] [--team <team>]",
		Short: "Lists the keys",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			user, _ := cmd.Flags().GetString("user")
			team, _ := cmd.Flags().GetString("team")
			return withKeyTable(cmd, func(ctx context.Context, t *keyTable) error {
				keys, err := t.List(ctx, keyFilter{User: user, Team: team})
				if err != nil {
					return err
				}
				now := time.Now()
				if asJSON(cmd) {
					views := make([]keyView, len(keys))
					for i, k := range keys {
						views[i] = viewOf(k, now)
					}
					return printJSON(cmd.OutOrStdout(), views)
				}
				tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "ID\tUSER\tTEAM\tNAME\tMODELS\tSTATUS\tCREATED\tLAST USED")
				for _, k := range keys {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", k.ID, dash(k.User), dash(k.Team), dash(k.Name),
						dash(strings.Join(k.Models, ",")), k.Status(now), k.CreatedAt.Format(time.DateTime), showTime(k.LastUsedAt))
				}
				return tw.Flush()
			})
		},
	}
	list.Flags().String("user", "", "Only the keys of this user")
	list.Flags().String("team", "", "Only the keys of this team")

	show := &cobra.Command{
		Use:   "show <id>",
		Short: "Shows a key's settings and state",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withKeyTable(cmd, func(ctx context.Context, t *keyTable) error {
				k, err := t.Get(ctx, args[0])
				if err != nil {
					return err
				}
				return printKey(cmd, k)
			})
		},
	}

	update := &cobra.Command{
		Use:   "update <id> [--disable | --enable] [--rpm <n>] [--expires never] ...",
		Short: "Changes a key's settings; only the flags given change",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := changeFromFlags(cmd.Flags())
			if err != nil {
				return err
			}
			return withKeyTable(cmd, func(ctx context.Context, t *keyTable) error {
				k, err := t.Update(ctx, args[0], c)
				if err != nil {
					return err
				}
				return printKey(cmd, k)
			})
		},
	}
	changeFlags(update.Flags())
	update.Flags().Bool("enable", false, "Enable a disabled key")

	revoke := &cobra.Command{
		Use:   "revoke <id>",
		Short: "Revokes a key for good",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withKeyTable(cmd, func(ctx context.Context, t *keyTable) error {
				k, err := t.Revoke(ctx, args[0])
				if err != nil {
					return err
				}
				return printKey(cmd, k)
			})
		},
	}

	key.AddCommand(create, list, show, update, revoke)
	return key
}

// changeFlags declares the flags of a key's settings.
func changeFlags(fs *pflag.FlagSet) {
	fs.String("user", "", "Who the key belongs to")
	fs.String("team", "", "The team the key belongs to")
	fs.String("name", "", "What the key is for")
	fs.StringSlice("models", nil, "The models the key may use, names or globs, comma-separated (default every model)")
	fs.Int64("rpm", 0, "Requests per minute (0: no limit)")
	fs.Int64("tpm", 0, "Tokens per minute (0: no limit)")
	fs.Int64("max-concurrent", 0, "Requests at once (0: no limit)")
	fs.Int64("quota", 0, "Tokens per quota period (0: no limit)")
	fs.String("quota-period", "", "daily, weekly or monthly (default the key's lifetime)")
	fs.Float64("budget", 0, "USD per budget period (0: no limit)")
	fs.String("budget-period", "", "daily, weekly or monthly (default the key's lifetime)")
	fs.String("expires", "", "When the key expires: 2027-01-31, 2027-01-31T12:00:00Z, 90d, 720h or never")
	fs.Bool("disable", false, "Refuse the key until enabled again")
}

// changeFromFlags turns the flags given, and only those, into a change.
func changeFromFlags(fs *pflag.FlagSet) (KeyChange, error) {
	var c KeyChange
	str := func(name string) *string {
		if !fs.Changed(name) {
			return nil
		}
		v, _ := fs.GetString(name)
		return &v
	}
	num := func(name string) *int64 {
		if !fs.Changed(name) {
			return nil
		}
		v, _ := fs.GetInt64(name)
		return &v
	}
	period := func(name string) *llm.Period {
		if v := str(name); v != nil {
			p := llm.Period(*v)
			return &p
		}
		return nil
	}
	c.User, c.Team, c.Name, c.ExpiresAt = str("user"), str("team"), str("name"), str("expires")
	c.RPM, c.TPM, c.MaxConcurrent, c.Quota = num("rpm"), num("tpm"), num("max-concurrent"), num("quota")
	c.QuotaPeriod, c.BudgetPeriod = period("quota-period"), period("budget-period")
	if fs.Changed("models") {
		v, _ := fs.GetStringSlice("models")
		c.Models = (*llm.Scope)(&v)
	}
	if fs.Changed("budget") {
		v, _ := fs.GetFloat64("budget")
		c.Budget = &v
	}
	disable, enable := fs.Changed("disable"), fs.Changed("enable")
	switch {
	case disable && enable:
		return c, errors.New("--disable and --enable contradict each other")
	case disable:
		v, _ := fs.GetBool("disable")
		c.Disabled = &v
	case enable:
		v, _ := fs.GetBool("enable")
		v = !v
		c.Disabled = &v
	}
	return c, nil
}

// withKeyTable opens the store the flags name, runs f on it and closes it.
func withKeyTable(cmd *cobra.Command, f func(context.Context, *keyTable) error) error {
	ctx, cancel := context.WithTimeout(cmd.Context(), time.Minute)
	defer cancel()
	fs := cmd.Flags()
	db, _ := fs.GetString("db")
	config, _ := fs.GetString("config")
	adapter, _ := fs.GetString("adapter")
	table, _ := fs.GetString("table")
	var d Database
	switch {
	case db != "" && config != "":
		return errors.New("give either --db or --config, not both")
	case db != "":
		dialect, dsn, err := sqldb.ParseDSN(db)
		if err != nil {
			return fmt.Errorf("--db: %w", err)
		}
		d = Database{Dialect: dialect, DSN: dsn, Table: table}
	case config != "":
		cfg, _, _, err := caddycmd.LoadConfig(config, adapter)
		if err != nil {
			return err
		}
		if d, err = configuredDatabase(cfg); err != nil {
			return fmt.Errorf("%s: %w", config, err)
		}
		if table != "" {
			d.Table = table
		}
	default:
		return errors.New("say where the keys are: --config <Caddyfile or JSON config> or --db sqlite:<path> / --db postgres://<user>@<host>/<db>")
	}
	if d.Dialect == "" {
		d.Dialect = sqldb.SQLite
	}
	t, err := openKeyTable(ctx, d.Dialect, caddy.NewReplacer().ReplaceAll(d.DSN, ""), d.Table)
	if err != nil {
		return err
	}
	defer sqldb.Release(t.db)
	return f(ctx, t)
}

// configuredDatabase finds the one database authenticator of a JSON config.
func configuredDatabase(cfg []byte) (Database, error) {
	var tree any
	if err := json.Unmarshal(cfg, &tree); err != nil {
		return Database{}, fmt.Errorf("reading the config: %w", err)
	}
	var found []Database
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			if v["handler"] == "llm_auth" {
				auths, _ := v["authenticators"].([]any)
				for _, a := range auths {
					if m, ok := a.(map[string]any); ok && m["source"] == "database" {
						var d Database
						b, _ := json.Marshal(m)
						if json.Unmarshal(b, &d) == nil && !slices.Contains(found, d) {
							found = append(found, d)
						}
					}
				}
			}
			for _, c := range v {
				walk(c)
			}
		case []any:
			for _, c := range v {
				walk(c)
			}
		}
	}
	walk(tree)
	switch len(found) {
	case 0:
		return Database{}, errors.New("no llm_auth in it has a database authenticator; name the store with --db")
	case 1:
		return found[0], nil
	}
	names := make([]string, len(found))
	for i, d := range found {
		names[i] = storeName(d.Dialect, d.DSN, d.Table)
	}
	return Database{}, fmt.Errorf("it has several database authenticators (%s); name one with --db", strings.Join(names, ", "))
}

func asJSON(cmd *cobra.Command) bool {
	v, _ := cmd.Flags().GetBool("json")
	return v
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// printKey shows one key, as JSON or as aligned lines.
func printKey(cmd *cobra.Command, k *StoredKey) error {
	now := time.Now()
	if asJSON(cmd) {
		return printJSON(cmd.OutOrStdout(), viewOf(k, now))
	}
	limit := func(v int64) string {
		if v == 0 {
			return "-"
		}
		return fmt.Sprint(v)
	}
	period := func(p llm.Period) string {
		if p == llm.PeriodLifetime {
			return "lifetime"
		}
		return string(p)
	}
	budget := "-"
	if k.Budget != 0 {
		budget = fmt.Sprintf("%g USD %s", k.Budget, period(k.BudgetPeriod))
	}
	quota := "-"
	if k.Quota != 0 {
		quota = fmt.Sprintf("%d tokens %s", k.Quota, period(k.QuotaPeriod))
	}
	tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
	for _, row := range [][2]string{
		{"id", k.ID}, {"status", k.Status(now)}, {"user", dash(k.User)}, {"team", dash(k.Team)}, {"name", dash(k.Name)},
		{"models", dash(strings.Join(k.Models, ","))}, {"rpm", limit(k.RPM)}, {"tpm", limit(k.TPM)},
		{"max concurrent", limit(k.MaxConcurrent)}, {"quota", quota}, {"budget", budget},
		{"expires", showTime(k.ExpiresAt)}, {"created", k.CreatedAt.Format(time.DateTime)},
		{"last used", showTime(k.LastUsedAt)}, {"revoked", showTime(k.RevokedAt)},
	} {
		fmt.Fprintf(tw, "%s:\t%s\n", row[0], row[1])
	}
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func showTime(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return t.UTC().Format(time.DateTime)
}
