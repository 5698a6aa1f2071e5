// Command caddy is Caddy with its standard modules and the better_auth
// handler. Build it with `go build ./cmd/caddy`; see xcaddy.md to add the
// module to a Caddy of your own instead.
package main

import (
	_ "time/tzdata"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/caddy-betterauth/caddy-betterauth"
	// The demo subcommand, which links the MCP SDK; see package democmd.
	_ "github.com/caddy-betterauth/caddy-betterauth/demo/democmd"
)

func main() {
	caddycmd.Main()
}
