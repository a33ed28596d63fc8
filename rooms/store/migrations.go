package store

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"
)

// The schema lives in migrations/<database>/NNNN_name.sql: each file is one
// version, applied once, in order, in the transaction that records it in
// schema_migrations. A file once released is never edited; a change is a
// new file, written so the previous release still runs on the new schema
// (instances of a cluster upgrade one at a time).
//
//go:embed migrations
var migrationFiles embed.FS

// migrationLock is the PostgreSQL advisory lock that serializes instances
// migrating at once ("roomcast" in ASCII).
const migrationLock = 0x726f6f6d63617374

type migration struct {
	version int64
	name    string
	sql     string
}

func migrationsOf(dialect string) ([]migration, error) {
	dir := path.Join("migrations", dialect)
	entries, err := fs.ReadDir(migrationFiles, dir)
	if err != nil {
		return nil, err
	}
	var out []migration
	for _, e := range entries {
		num, _, ok := strings.Cut(e.Name(), "_")
		v, err := strconv.ParseInt(num, 10, 64)
		if !ok || err != nil || v <= 0 || !strings.HasSuffix(e.Name(), ".sql") {
			return nil, fmt.Errorf("store: migration %s is not named NNNN_name.sql", e.Name())
		}
		b, err := fs.ReadFile(migrationFiles, path.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		out = append(out, migration{version: v, name: e.Name(), sql: string(b)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].version < out[j].version })
	return out, nil
}

// migrate brings db's schema to the newest version in one transaction.
// lock, when not "", runs first in it: PostgreSQL takes an advisory lock
// there so that instances starting at once migrate one after the other
// (the later ones then find nothing left to do); SQLite's write
// transaction is exclusive already.
func migrate(ctx context.Context, db database, dialect, lock string) error {
	ms, err := migrationsOf(dialect)
	if err != nil {
		return err
	}
	tx, err := db.begin(ctx, true)
	if err != nil {
		return fmt.Errorf("store: migrate: %w", err)
	}
	defer tx.rollback()
	if lock != "" {
		if err := tx.exec(ctx, lock); err != nil {
			return fmt.Errorf("store: migrate: lock: %w", err)
		}
	}
	if err := tx.exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    bigint PRIMARY KEY,
		applied_at bigint NOT NULL
	)`); err != nil {
		return fmt.Errorf("store: migrate: %w", err)
	}
	var current int64
	if err := tx.queryRow(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&current); err != nil {
		return fmt.Errorf("store: migrate: %w", err)
	}
	// A schema newer than this build (a newer instance migrated it) is
	// left as it is: migrations keep the previous release working.
	for _, m := range ms {
		if m.version <= current {
			continue
		}
		if err := tx.exec(ctx, m.sql); err != nil {
			return fmt.Errorf("store: migration %s: %w", m.name, err)
		}
		if err := tx.exec(ctx, `INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)`,
			m.version, time.Now().UnixMicro()); err != nil {
			return fmt.Errorf("store: migration %s: %w", m.name, err)
		}
	}
	if err := tx.commit(ctx); err != nil {
		return fmt.Errorf("store: migrate: commit: %w", err)
	}
	return nil
}
