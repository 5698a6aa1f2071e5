// Package caddybetterauth registers caddy-betterauth's Caddy modules, so that
//
//	xcaddy build --with github.com/caddy-betterauth/caddy-betterauth
//
// builds a Caddy with the better_auth handler. The handler itself lives in
// package caddyauth, the Caddy-free core in package betterauth.
package caddybetterauth

import (
	// Register http.handlers.better_auth and the better_auth directive.
	_ "github.com/caddy-betterauth/caddy-betterauth/caddyauth"
)
