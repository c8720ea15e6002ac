// Command caddy is Caddy with its standard modules and the llmoneapi modules,
// for running the gateway from a checkout: go run ./cmd/caddy run --config Caddyfile.example
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/llmoneapi/llmoneapi"
)

func main() {
	caddycmd.Main()
}
