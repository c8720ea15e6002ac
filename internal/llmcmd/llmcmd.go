// Package llmcmd is the `caddy llm` command. It holds no subcommand of its
// own: each package that has one adds it from its init function, so that
// `caddy llm key ...` lives beside the keys and one `llm` command serves
// them all (Caddy allows each command name once).
package llmcmd

import (
	"sync"

	"github.com/spf13/cobra"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
)

var (
	mu   sync.Mutex
	subs []func() *cobra.Command
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "llm",
		Short: "Manages the llmoneapi LLM gateway",
		Long: `
Commands for the llmoneapi LLM gateway modules, such as 'caddy llm key' to
manage the API keys of a database authenticator.
`,
		CobraFunc: func(cmd *cobra.Command) {
			mu.Lock()
			defer mu.Unlock()
			for _, sub := range subs {
				cmd.AddCommand(sub())
			}
		},
	})
}

// Add registers a subcommand of `caddy llm`, built when Caddy builds its
// command line. Call it from an init function.
func Add(sub func() *cobra.Command) {
	mu.Lock()
	defer mu.Unlock()
	subs = append(subs, sub)
}
