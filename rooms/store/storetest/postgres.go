// Package storetest gives tests a PostgreSQL database of their own: the
// store's behaviour tables and the end-to-end tests of the binary share
// it.
package storetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

// AdminURL is the PostgreSQL the tests use: ROOMCAST_TEST_POSTGRES, a
// postgres:// URL with rights to create databases, or the local default.
func AdminURL() string {
	if u := os.Getenv("ROOMCAST_TEST_POSTGRES"); u != "" {
		return u
	}
	return "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
}

// PostgresDB creates a fresh database named prefix_<random> on AdminURL
// and drops it (connections and all) when t ends; it returns the new
// database's URL.
func PostgresDB(t testing.TB, prefix string) string {
	t.Helper()
	ctx := context.Background()
	admin := AdminURL()
	u, err := url.Parse(admin)
	if err != nil {
		t.Fatalf("ROOMCAST_TEST_POSTGRES is not a URL: %v", err)
	}
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		t.Fatalf("PostgreSQL at %s: %v (start it, or point ROOMCAST_TEST_POSTGRES at one)", u.Redacted(), err)
	}
	defer conn.Close(ctx)
	b := make([]byte, 8)
	rand.Read(b)
	name := prefix + "_" + hex.EncodeToString(b)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("create database: %v", err)
	}
	t.Cleanup(func() {
		conn, err := pgx.Connect(ctx, admin)
		if err != nil {
			t.Errorf("drop database %s: %v", name, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("drop database %s: %v", name, err)
		}
	})
	u.Path = "/" + name
	return u.String()
}

// DBName is the database a URL PostgresDB returned names.
func DBName(dbURL string) string {
	u, err := url.Parse(dbURL)
	if err != nil {
		return ""
	}
	return strings.TrimPrefix(u.Path, "/")
}

// Outage makes the database unreachable until the returned function is
// called: new connections are refused and every open one is ended, as
// when the server goes away. The database is reachable again once the
// test ends in any case.
func Outage(t testing.TB, dbURL string) (restore func()) {
	t.Helper()
	ctx := context.Background()
	name := DBName(dbURL)
	admin := func(sql string, args ...any) {
		t.Helper()
		conn, err := pgx.Connect(ctx, AdminURL())
		if err != nil {
			t.Fatalf("PostgreSQL admin connection: %v", err)
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, sql, args...); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	admin("ALTER DATABASE " + name + " WITH ALLOW_CONNECTIONS false")
	admin("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()", name)
	restored := false
	restore = func() {
		if !restored {
			restored = true
			admin("ALTER DATABASE " + name + " WITH ALLOW_CONNECTIONS true")
		}
	}
	t.Cleanup(restore)
	return restore
}
