package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/caddy-betterauth/caddy-betterauth/schema"
	"github.com/caddy-betterauth/caddy-betterauth/store"
)

// Inspector is what the doctor needs from a store.
type Inspector interface {
	Catalog(ctx context.Context) (schema.Catalog, error)
	Layout(ctx context.Context) (*schema.Layout, error)
	OAuthResource(ctx context.Context, identifier string) (bool, error)
	Dialect() store.Dialect
}

// DoctorOptions say what the gateway will be asked to accept, beyond what
// the database shows.
type DoctorOptions struct {
	// OrgConfigIDs are the api-key configurations whose references is
	// "organization" (the better_auth block's api_key_config <id> {
	// references organization }): their keys need the organization
	// plugin's table.
	OrgConfigIDs []string
	// OAuthResource is the oauth block's resource: the OAuth provider
	// issues tokens for it only with an oauthResource row.
	OAuthResource string
}

// Doctor connects to the database, prints the Better-Auth tables and
// columns it finds, the layout the gateway will use, and for anything
// missing, what to do. It exits 0 when the gateway can use the database, 1
// when it cannot, and 2 when the database cannot be reached.
func Doctor(ctx context.Context, db Inspector, cfg schema.Config, opts DoctorOptions, out, errOut io.Writer) int {
	orgConfigIDs := opts.OrgConfigIDs
	cat, err := db.Catalog(ctx)
	if err != nil {
		fmt.Fprintf(errOut, "doctor: cannot read the %s database: %v\n", db.Dialect(), err)
		fmt.Fprintln(errOut, "fix: check the URL, that the server is running and reachable, and the credentials")
		return ExitError
	}
	fmt.Fprintf(out, "database: %s, reachable\n", db.Dialect())
	names := make([]string, 0, len(cat))
	for t := range cat {
		names = append(names, t)
	}
	sort.Strings(names)
	if len(names) == 0 {
		fmt.Fprintf(out, "tables: none of %s\n", strings.Join(cfg.Candidates(), ", "))
	} else {
		fmt.Fprintln(out, "tables:")
	}
	for _, t := range names {
		fmt.Fprintf(out, "  %s: %s\n", t, strings.Join(cat[t], ", "))
	}

	layout, err := db.Layout(ctx)
	var unusable *schema.UnusableError
	switch {
	case errors.As(err, &unusable):
		fmt.Fprintln(out, "problem:", unusable)
		fmt.Fprintln(out, "fix:", fixFor(unusable))
		return ExitDeny
	case err != nil:
		fmt.Fprintln(out, "problem:", strings.TrimPrefix(strings.TrimPrefix(err.Error(), "pgstore: "), "sqlitestore: "))
		return ExitError
	}
	fmt.Fprintln(out, "layout:", layout.Describe())
	fmt.Fprintln(out, "matches:", versions(layout))
	ok := true
	if layout.APIKey == nil {
		ok = false
		fmt.Fprintln(out, "note: no api-key table, so API keys are all unknown; fix: add the @better-auth/api-key plugin to the app and run its migration (npx auth migrate)")
	}
	if layout.Session == nil {
		fmt.Fprintln(out, "note: no session table, so session tokens are unknown unless the app keeps its sessions in secondary storage; then give the gateway the `secondary_storage` block")
	}
	if !layout.Admin {
		fmt.Fprintln(out, "note: no admin plugin columns (role, banned, banExpires): no X-Auth-User-Role header and no bans to enforce")
	}
	switch {
	case len(orgConfigIDs) > 0 && layout.Org == nil:
		why := "there is no organization table"
		if layout.OrgProblem != "" {
			why = strings.TrimPrefix(layout.OrgProblem, schema.ErrUnusable.Error()+": ")
		}
		fmt.Fprintf(out, "problem: api-key configuration %s references organizations, but %s: its keys are all unknown (INVALID_API_KEY); "+
			"fix: add Better-Auth's organization plugin to the app and run its migration (npx auth migrate)\n", strings.Join(orgConfigIDs, ", "), why)
	case len(orgConfigIDs) > 0 && layout.APIKey != nil && layout.Owner == schema.UserID:
		fmt.Fprintf(out, "problem: api-key configuration %s references organizations, but the api-key table is better-auth 1.3/1.4's (userId): "+
			"its keys are all unknown (INVALID_API_KEY); fix: move to @better-auth/api-key 1.5+\n", strings.Join(orgConfigIDs, ", "))
	}
	if layout.Org != nil && (layout.Member == nil || layout.Session == nil || !layout.Session.Has("activeOrganizationId")) {
		fmt.Fprintln(out, "note: an organization table without the organization plugin's member table or session.activeOrganizationId column:"+
			" sessions carry no X-Auth-Org-Id or X-Auth-Org-Role and fail require_org_role")
	} else if layout.Org == nil && layout.OrgProblem != "" {
		fmt.Fprintln(out, "note: not using the organization plugin's tables:", strings.TrimPrefix(layout.OrgProblem, schema.ErrUnusable.Error()+": "))
	}
	if layout.OAuth == nil && layout.OAuthProblem != "" {
		fmt.Fprintln(out, "note: not using the OAuth token table, so OAuth access tokens are all unknown:", layout.OAuthProblem)
	}
	if r := opts.OAuthResource; r != "" {
		switch found, err := db.OAuthResource(ctx, r); {
		case err != nil:
			fmt.Fprintln(out, "problem: cannot read the OAuth provider's resources:", err)
			return ExitError
		case layout.OAuth == nil:
			ok = false
			fmt.Fprintf(out, "problem: the oauth block names resource %s, but there is no OAuth provider token table: OAuth access tokens are all unknown; "+
				"fix: add @better-auth/oauth-provider to the app and run its migration (npx auth migrate)\n", r)
		case layout.OAuth.Legacy:
			fmt.Fprintln(out, "note: the legacy mcp()/oidcProvider() tables: their tokens carry no resource, so the oauth block needs allow_unbound_tokens")
		case !found:
			ok = false
			fmt.Fprintf(out, "problem: no oauthResource row for %s: Better-Auth's OAuth provider refuses to issue tokens for it (invalid_target), and refuses its JWTs; "+
				"fix: register it (the provider's resources option, or its admin API), with exactly the URL clients call\n", r)
		default:
			fmt.Fprintf(out, "oauth: resource %s is registered with the OAuth provider\n", r)
		}
	}
	switch {
	case ok:
		fmt.Fprintln(out, "ok: the gateway can use this database")
	case layout.APIKey == nil:
		fmt.Fprintln(out, "ok: the gateway can use this database for sessions")
	default:
		fmt.Fprintln(out, "ok: the gateway can use this database, except for the problems above")
	}
	return ExitOK
}

// versions says which Better-Auth releases write this layout.
func versions(l *schema.Layout) string {
	var parts []string
	switch l.Naming {
	case schema.SnakeCase:
		parts = append(parts, "Drizzle schema (snake_case)")
	default:
		parts = append(parts, "Better-Auth migrations or Prisma (camelCase)")
	}
	if l.APIKey != nil {
		if l.Owner == schema.UserID {
			parts = append(parts, "api-key plugin of better-auth 1.3/1.4 (userId, no configId)")
		} else {
			parts = append(parts, "@better-auth/api-key 1.5+ (referenceId, configId)")
		}
	}
	return strings.Join(parts, "; ")
}

// fixFor says what to do about an unusable schema, in the better_auth
// block's terms.
func fixFor(e *schema.UnusableError) string {
	switch {
	case e.Problem == schema.NoUserTable:
		return "run Better-Auth's migration in the app (npx auth migrate, or your ORM's), or, if the table is renamed, set `schema { table user <name> }` in the better_auth block"
	case e.Problem == schema.NoCredentialTable:
		return "run Better-Auth's migration in the app, or name the tables with `schema { table session <name> }` / `schema { table api_key <name> }`"
	case e.Problem == schema.NoNamedTable:
		return fmt.Sprintf("check the name set with `schema { table %s <name> }`: the database has no table %q", caddyfileModel(e.Model), e.Table)
	case e.OwnerMissing():
		other := schema.UserID
		if e.Field == "userId" {
			other = schema.ReferenceID
		}
		return fmt.Sprintf("if the app renamed the owner column, map it with `schema { column apikey.%s <column> }`; "+
			"if its table is the other plugin version's, set `schema { api_key_owner %s }`; otherwise run the api-key plugin's migration (npx auth migrate)",
			e.Field, other)
	case e.Problem == schema.NoColumn:
		return fmt.Sprintf("if the app renamed %s.%s, map it with `schema { column %s.%s <column> }`; otherwise run Better-Auth's migration (npx auth migrate) to add it",
			e.Model, e.Field, e.Model, e.Field)
	}
	return "run Better-Auth's migration in the app (npx auth migrate)"
}

// caddyfileModel is the name the `schema { table ... }` subdirective gives
// a model.
func caddyfileModel(model string) string {
	if model == "apikey" {
		return "api_key"
	}
	return model
}
