// Package pgtest gives tests a PostgreSQL to run against: the server whose
// DSN is in TREASURYD_TEST_POSTGRES_DSN (.ci/run starts a throwaway one),
// and a fresh schema per test on it.
package pgtest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net/url"
	"os"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" driver
)

// EnvDSN names the environment variable holding the test server's DSN.
const EnvDSN = "TREASURYD_TEST_POSTGRES_DSN"

// DSN returns the test server's DSN. Without one the test is skipped on a
// developer machine and fails under CI (CI set), where .ci/run starts one.
func DSN(t testing.TB) string {
	t.Helper()
	dsn := os.Getenv(EnvDSN)
	if dsn == "" {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is not set under CI: .ci/run starts a PostgreSQL for the tests", EnvDSN)
		}
		t.Skipf("no PostgreSQL: set %s (as .ci/run does) to run this test", EnvDSN)
	}
	return dsn
}

// Schema creates a fresh schema on the test server, drops it when the test
// ends, and returns a DSN whose connections use it (search_path).
func Schema(t testing.TB) string {
	t.Helper()
	dsn := DSN(t)
	var b [6]byte
	rand.Read(b[:])
	name := "t_" + hex.EncodeToString(b[:])
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatalf("open %s: %v", EnvDSN, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := db.ExecContext(ctx, "CREATE SCHEMA "+name); err != nil {
		db.Close()
		t.Fatalf("create schema: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		db.ExecContext(ctx, "DROP SCHEMA "+name+" CASCADE")
		db.Close()
	})
	return WithParam(t, dsn, "search_path", name)
}

// WithParam returns dsn (a postgres:// URL) with one more query parameter.
func WithParam(t testing.TB, dsn, key, value string) string {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatalf("%s is not a URL", EnvDSN)
	}
	q := u.Query()
	q.Set(key, value)
	u.RawQuery = q.Encode()
	return u.String()
}

// Database creates a fresh database on the test server, drops it when the
// test ends, and returns its DSN: for tests of server-wide things such as
// advisory locks.
func Database(t testing.TB) string {
	t.Helper()
	dsn := DSN(t)
	var b [6]byte
	rand.Read(b[:])
	name := "t_" + hex.EncodeToString(b[:])
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatalf("open %s: %v", EnvDSN, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := db.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		db.Close()
		t.Fatalf("create database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		db.ExecContext(ctx, "DROP DATABASE "+name+" WITH (FORCE)")
		db.Close()
	})
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatalf("%s is not a URL", EnvDSN)
	}
	u.Path = "/" + name
	return u.String()
}
