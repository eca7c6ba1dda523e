package journal

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"
)

// migrationFS holds the schema migrations, one file per version, named
// NNNN_what.sql and numbered 1, 2, 3... without gaps. PRAGMA user_version
// records the last one applied. A migration is never edited once released:
// a change is a new file.
//
//go:embed migrations/*.sql
var migrationFS embed.FS

type migration struct {
	version int
	name    string
	sql     string
}

// migrations returns the embedded SQLite migrations in version order,
// checking that they are numbered 1..n without gaps or duplicates.
func migrations() ([]migration, error) { return loadMigrations(migrationFS, "migrations") }

// loadMigrations reads the NNNN_what.sql files of dir in fsys in version
// order, checking that they are numbered 1..n without gaps or duplicates.
func loadMigrations(fsys fs.FS, dir string) ([]migration, error) {
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, err
	}
	var ms []migration
	for _, e := range entries {
		name := e.Name()
		num, _, ok := strings.Cut(name, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || !strings.HasSuffix(name, ".sql") {
			return nil, fmt.Errorf("migration %s: name is not NNNN_what.sql", name)
		}
		body, err := fs.ReadFile(fsys, dir+"/"+name)
		if err != nil {
			return nil, err
		}
		ms = append(ms, migration{version: v, name: name, sql: string(body)})
	}
	sort.Slice(ms, func(a, b int) bool { return ms[a].version < ms[b].version })
	for i, m := range ms {
		if m.version != i+1 {
			return nil, fmt.Errorf("migration %s: version %d, want %d", m.name, m.version, i+1)
		}
	}
	return ms, nil
}

// SchemaVersion is the schema version this binary writes: the number of the
// last embedded migration.
func SchemaVersion() int {
	ms, err := migrations()
	if err != nil {
		panic(err) // the embedded files are fixed at build time; TestMigrationsAreNumbered covers this
	}
	return len(ms)
}

// migrate applies every migration newer than the file's user_version, all in
// one transaction (BEGIN IMMEDIATE, so two processes opening the same new
// file apply them once). A file from a newer schema is refused.
func (j *Journal) migrate(ctx context.Context) error {
	ms, err := migrations()
	if err != nil {
		return err
	}
	return j.write(ctx, j.full, func(tx *sql.Tx) error {
		var cur int
		if err := tx.QueryRowContext(ctx, "PRAGMA user_version").Scan(&cur); err != nil {
			return fmt.Errorf("read schema version: %w", err)
		}
		if cur > len(ms) {
			return fmt.Errorf("%w: file has schema version %d, this binary knows up to %d; use a newer treasuryd",
				ErrNewerSchema, cur, len(ms))
		}
		for _, m := range ms[cur:] {
			if _, err := tx.ExecContext(ctx, m.sql); err != nil {
				return fmt.Errorf("apply migration %s: %w", m.name, err)
			}
			if m.version == auditMigration {
				// The chain starts with what the journal already holds.
				if err := j.auditSnapshot(ctx, tx); err != nil {
					return fmt.Errorf("apply migration %s: snapshot into the audit chain: %w", m.name, err)
				}
			}
		}
		if cur < len(ms) {
			// user_version lives in the file header (page 1), so it commits
			// or rolls back with the migrations themselves.
			if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", len(ms))); err != nil {
				return fmt.Errorf("set schema version: %w", err)
			}
		}
		return nil
	})
}

// checkSchemaReadOnly refuses a file whose schema is not exactly this
// binary's: a read-only handle cannot migrate an older one.
func (j *Journal) checkSchemaReadOnly(ctx context.Context) error {
	var cur int
	if err := j.r.QueryRowContext(ctx, "PRAGMA user_version").Scan(&cur); err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	want := SchemaVersion()
	switch {
	case cur > want:
		return fmt.Errorf("%w: file has schema version %d, this binary knows up to %d; use a newer treasuryd",
			ErrNewerSchema, cur, want)
	case cur < want:
		return fmt.Errorf("file has schema version %d, this binary needs %d; open it read-write once (start the daemon) to migrate it",
			cur, want)
	}
	return nil
}
