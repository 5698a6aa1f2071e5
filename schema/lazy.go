package schema

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
)

// Prepared is a resolved layout and its queries.
type Prepared struct {
	Layout  *Layout
	Queries Queries
}

// Lazy resolves a layout on first use, never at construction: stores are
// built while Caddy loads its config, when the database may not be up. A
// failure is returned to the caller and tried again on the next call, never
// remembered, so fixing the database needs no restart.
type Lazy struct {
	// Name starts the errors Get returns ("pgstore").
	Name    string
	Config  Config
	Dialect Dialect
	// Catalog reads the database's catalog.
	Catalog func(ctx context.Context) (Catalog, error)
	// Resolved, if set, is told about the layout once it is known.
	Resolved func(*Layout)

	mu    sync.Mutex // serialises resolution
	ready atomic.Pointer[Prepared]
}

// Get returns the prepared layout, resolving it if it is not yet known.
func (z *Lazy) Get(ctx context.Context) (*Prepared, error) {
	if p := z.ready.Load(); p != nil {
		return p, nil
	}
	z.mu.Lock()
	defer z.mu.Unlock()
	if p := z.ready.Load(); p != nil {
		return p, nil
	}
	cat, err := z.Catalog(ctx)
	if err == nil {
		var layout *Layout
		if layout, err = z.Config.Resolve(cat); err == nil {
			return z.store(layout), nil
		}
	}
	if z.Name != "" {
		err = fmt.Errorf("%s: %w", z.Name, err)
	}
	return nil, err
}

// Layout returns the resolved layout, resolving it if it is not yet known.
func (z *Lazy) Layout(ctx context.Context) (*Layout, error) {
	p, err := z.Get(ctx)
	if err != nil {
		return nil, err
	}
	return p.Layout, nil
}

// store keeps a resolved layout; the caller holds z.mu.
func (z *Lazy) store(layout *Layout) *Prepared {
	p := &Prepared{Layout: layout, Queries: layout.Build(z.Dialect)}
	z.ready.Store(p)
	if z.Resolved != nil {
		z.Resolved(layout)
	}
	return p
}

// JWKSTable is the name of the jwks table (the jwt and OAuth provider
// plugins' signing keys) beside the layout: jwkss when the adapters'
// usePlural is configured (known without reading the catalog), or when
// the user table detected is "users".
func (z *Lazy) JWKSTable(ctx context.Context) (string, error) {
	if z.Config.UsePlural {
		return "jwkss", nil
	}
	l, err := z.Layout(ctx)
	if err != nil {
		return "", err
	}
	if z.Config.UserTable == "" && l.User.Name == "users" {
		return "jwkss", nil
	}
	return "jwks", nil
}
