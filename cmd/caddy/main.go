// Command caddy is Caddy with the standard modules and the better_auth
// handler compiled in. Build it with `go build ./cmd/caddy`.
package main

import (
	_ "time/tzdata"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	_ "github.com/caddyserver/caddy/v2/modules/standard"
)

func main() {
	caddycmd.Main()
}
