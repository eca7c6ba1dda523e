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
	"os/exec"
	"path/filepath"
	"strings"
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
	name := create(t, dsn, "SCHEMA", "CASCADE")
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
	name := create(t, dsn, "DATABASE", "WITH (FORCE)")
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatalf("%s is not a URL", EnvDSN)
	}
	u.Path = "/" + name
	return u.String()
}

// create makes a fresh object of kind (SCHEMA or DATABASE) with a random
// name on the server of dsn, drops it (DROP kind name dropOpts) when the
// test ends, and returns its name.
func create(t testing.TB, dsn, kind, dropOpts string) string {
	t.Helper()
	var b [6]byte
	rand.Read(b[:])
	name := "t_" + hex.EncodeToString(b[:])
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatalf("open %s: %v", EnvDSN, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := db.ExecContext(ctx, "CREATE "+kind+" "+name); err != nil {
		db.Close()
		t.Fatalf("create %s: %v", strings.ToLower(kind), err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		db.ExecContext(ctx, "DROP "+kind+" "+name+" "+dropOpts)
		db.Close()
	})
	return name
}

// Server is a private PostgreSQL server for one test, for tests that
// restart the server (a shared one would fail every other test using it).
type Server struct {
	DSN  string
	bin  string
	data string
	dir  string
}

// StartServer initialises and starts a private server on a unix socket in a
// temporary directory, and stops it when the test ends. It needs the
// PostgreSQL server binaries (Debian's postgresql package, which .ci/run
// installs): skipped without them on a developer machine, failed under CI.
// As root it runs the server as the postgres user.
func StartServer(t testing.TB) *Server {
	t.Helper()
	bin := ""
	if ctl := os.Getenv("TREASURYD_TEST_POSTGRES_CTL"); ctl != "" {
		bin = filepath.Dir(ctl)
	} else if m, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb"); len(m) > 0 {
		bin = filepath.Dir(m[len(m)-1])
	}
	if bin == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("no PostgreSQL server binaries under CI: .ci/run installs Debian's postgresql")
		}
		t.Skip("no PostgreSQL server binaries (apt-get install postgresql)")
	}
	dir, err := os.MkdirTemp("", "treasuryd-pgtest-")
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{bin: bin, data: filepath.Join(dir, "data"), dir: dir}
	if os.Getuid() == 0 {
		if out, err := exec.Command("chown", "postgres", dir).CombinedOutput(); err != nil {
			os.RemoveAll(dir)
			t.Fatalf("chown postgres %s: %v\n%s", dir, err, out)
		}
	}
	if out, err := s.run("initdb", "-D", s.data, "-U", "postgres", "-A", "trust", "--no-sync"); err != nil {
		os.RemoveAll(dir)
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	if out, err := s.ctl("start"); err != nil {
		os.RemoveAll(dir)
		t.Fatalf("pg_ctl start: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		s.run("pg_ctl", "-D", s.data, "-m", "immediate", "stop")
		os.RemoveAll(dir)
	})
	s.DSN = "postgres://postgres@/postgres?host=" + url.QueryEscape(dir) + "&port=5432&sslmode=disable"
	return s
}

// Restart restarts the server (fast shutdown: every session ends).
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	if out, err := s.ctl("restart"); err != nil {
		t.Fatalf("pg_ctl restart: %v\n%s", err, out)
	}
}

func (s *Server) ctl(action string) ([]byte, error) {
	// -l: the server's output goes to a file, not to this process's pipes
	// (which it would hold open for good).
	return s.run("pg_ctl", "-D", s.data, "-l", filepath.Join(s.dir, "log"), "-w", "-t", "60", "-m", "fast",
		"-o", "-k "+s.dir+" -p 5432 -c listen_addresses='' -c fsync=off", action)
}

func (s *Server) run(name string, args ...string) ([]byte, error) {
	path := filepath.Join(s.bin, name)
	cmd := exec.Command(path, args...)
	if os.Getuid() == 0 {
		cmd = exec.Command("runuser", append([]string{"-u", "postgres", "--", path}, args...)...)
	}
	return cmd.CombinedOutput()
}
