// Package cli implements the `caddy better-auth` subcommands that need no
// Caddy: hash-key, check, doctor and install-triggers/uninstall-triggers.
// Each reads its input from an io.Reader, writes to io.Writers and returns
// the process exit code, so that they are tested without a process.
package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/caddy-betterauth/caddy-betterauth/betterauth"
)

// Exit codes.
const (
	ExitOK    = 0 // allowed; schema usable
	ExitDeny  = 1 // denied; schema unusable
	ExitError = 2 // bad usage, or the database could not answer
)

// ExitStatus is the error a command returns to end the process with Code:
// commands return it, and only the outermost layer, which owns the
// process, exits.
type ExitStatus struct{ Code int }

func (e *ExitStatus) Error() string { return fmt.Sprintf("exit status %d", e.Code) }

// Exit returns nil for ExitOK and an *ExitStatus for any other code.
func Exit(code int) error {
	if code == ExitOK {
		return nil
	}
	return &ExitStatus{Code: code}
}

// readSecret reads one credential: the first line of r, trimmed. Secrets
// come from stdin or a file, never from the command line, so that they stay
// out of shell history and process lists.
func readSecret(r io.Reader) (string, error) {
	br := bufio.NewReader(io.LimitReader(r, 64<<10))
	line, err := br.ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", err
	}
	line = strings.TrimSpace(line)
	if line == "" {
		return "", errors.New("no credential on input")
	}
	return line, nil
}

// HashKey prints the value Better-Auth stores in apikey.key for the key read
// from in.
func HashKey(in io.Reader, out, errOut io.Writer) int {
	key, err := readSecret(in)
	if err != nil {
		fmt.Fprintln(errOut, "hash-key:", err)
		return ExitError
	}
	fmt.Fprintln(out, betterauth.HashAPIKey(key))
	return ExitOK
}

// CheckOptions configure Check.
type CheckOptions struct {
	Store  betterauth.Store
	Secret string
	// As says how the credential is presented: "api-key" (an x-api-key
	// header), "bearer" (an Authorization: Bearer value: an API key or a
	// session token, told apart by shape) or "cookie" (the session cookie's
	// value). Default: bearer.
	As             string
	APIKeyPrefixes []string
	ConfigIDs      []string
	// OrgConfigIDs are the configurations whose keys belong to
	// organizations.
	OrgConfigIDs []string
}

// Check verifies the credential read from in, as the gateway would, and
// prints the decision. It exits 0 when allowed, 1 when denied and 2 when the
// database could not answer.
func Check(ctx context.Context, opts CheckOptions, in io.Reader, out, errOut io.Writer) int {
	secret, err := readSecret(in)
	if err != nil {
		fmt.Fprintln(errOut, "check:", err)
		return ExitError
	}
	var h = betterauth.HTTPHeader{}
	switch opts.As {
	case "api-key":
		h["X-Api-Key"] = []string{secret}
	case "", "bearer":
		h["Authorization"] = []string{"Bearer " + secret}
	case "cookie":
		h["Cookie"] = []string{betterauth.DefaultCookiePrefix + ".session_token=" + secret}
	default:
		fmt.Fprintf(errOut, "check: --as must be api-key, bearer or cookie, not %q\n", opts.As)
		return ExitError
	}
	ex := betterauth.NewExtractor(betterauth.ExtractorConfig{APIKeyPrefixes: opts.APIKeyPrefixes})
	v, err := betterauth.NewVerifier(betterauth.Options{Store: opts.Store, Secret: opts.Secret, ConfigIDs: opts.ConfigIDs,
		OrgConfigIDs: opts.OrgConfigIDs})
	if err != nil {
		fmt.Fprintln(errOut, "check:", err)
		return ExitError
	}
	cred := ex.Extract(h)
	d, err := v.Verify(ctx, cred)
	o := d.Reason.Outcome()
	if err != nil {
		fmt.Fprintf(out, "decision:  error\ncode:      %s\nstatus:    %d\n", o.Code, o.Status)
		fmt.Fprintln(errOut, "check: the database could not answer:", err)
		return ExitError
	}
	fmt.Fprintf(out, "decision:  %s\ncode:      %s\nstatus:    %d\nmessage:   %s\n", decisionWord(d), o.Code, o.Status, o.Message)
	fmt.Fprintf(out, "fingerprint: %s\n", betterauth.Fingerprint(cred.Value))
	if !d.Allowed() {
		return ExitDeny
	}
	for _, hd := range d.AppendHeaders(nil) {
		fmt.Fprintf(out, "%s: %s\n", hd.Name, hd.Value)
	}
	return ExitOK
}

func decisionWord(d betterauth.Decision) string {
	if d.Allowed() {
		return "allow"
	}
	return "deny"
}
