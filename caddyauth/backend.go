package caddyauth

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/zap"

	"github.com/caddy-betterauth/caddy-betterauth/cache"
	"github.com/caddy-betterauth/caddy-betterauth/pgstore"
	"github.com/caddy-betterauth/caddy-betterauth/schema"
)

// config is the schema package's view of the configured schema; unset
// fields are detected from the database on first use.
func (s Schema) config() schema.Config {
	return schema.Config{
		Naming:       schema.Naming(s.Naming),
		UserTable:    s.UserTable,
		SessionTable: s.SessionTable,
		APIKeyTable:  s.APIKeyTable,
		UsePlural:    s.UsePlural,
		Owner:        schema.Owner(s.APIKeyOwner),
		Columns:      s.Columns,
	}
}

// backends shares one database pool and one record cache between every
// handler configured with the same backend, and keeps them (warm) across
// config reloads, which provision the new handlers before cleaning up the
// old ones.
var backends = caddy.NewUsagePool()

// backendConfig is everything that shapes a backend; its hash is the pool
// key. It holds the resolved DSN, so it is never logged.
type backendConfig struct {
	Database  string
	PlainKeys bool
	Timeout   time.Duration
	Schema    Schema
	Cache     Cache
}

type backend struct {
	pool  *pgxpool.Pool
	store *cache.Store
}

// Destruct closes the pool when the last handler using it is cleaned up.
func (b *backend) Destruct() error {
	b.pool.Close()
	return nil
}

func loadBackend(cfg backendConfig, logger *zap.Logger) (*backend, string, error) {
	raw, err := json.Marshal(cfg)
	if err != nil {
		return nil, "", err
	}
	sum := sha256.Sum256(raw)
	key := hex.EncodeToString(sum[:])
	v, _, err := backends.LoadOrNew(key, func() (caddy.Destructor, error) { return newBackend(cfg, logger) })
	if err != nil {
		return nil, "", err
	}
	return v.(*backend), key, nil
}

func newBackend(cfg backendConfig, logger *zap.Logger) (*backend, error) {
	pcfg, err := pgxpool.ParseConfig(cfg.Database)
	if err != nil {
		// pgx's message can quote the URL; say only what is wrong with it.
		return nil, fmt.Errorf("database: not a valid PostgreSQL URL or DSN")
	}
	if _, ok := pcfg.ConnConfig.RuntimeParams["application_name"]; !ok {
		pcfg.ConnConfig.RuntimeParams["application_name"] = "caddy-better-auth"
	}
	// NewWithConfig does not connect: the first lookup does.
	pool, err := pgxpool.NewWithConfig(context.Background(), pcfg)
	if err != nil {
		return nil, fmt.Errorf("database: %w", err)
	}
	s := cfg.Schema
	store, err := pgstore.New(pool, pgstore.Options{
		PlainKeys: cfg.PlainKeys,
		Logger:    logger.Named("pgstore"),
		PGSchema:  s.PGSchema,
		Schema:    s.config(),
	})
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("schema: %w", err)
	}
	c := cfg.Cache
	return &backend{pool: pool, store: cache.New(store, cache.Options{
		TTL:           time.Duration(c.TTL),
		NegativeTTL:   time.Duration(c.NegativeTTL),
		MaxEntries:    c.MaxEntries,
		MaxNegative:   c.MaxNegative,
		LookupTimeout: cfg.Timeout,
	})}, nil
}
