package sqldb

import (
	"context"
	"path/filepath"
	"testing"
)

// PostgresDSN is the test database every machine of the project runs.
const postgresDSN = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

func TestMigrateBothDialects(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct{ dialect, dsn string }{
		{SQLite, filepath.Join(t.TempDir(), "sub", "t.db")},
		{Postgres, postgresDSN},
	} {
		t.Run(tc.dialect, func(t *testing.T) {
			db, err := Open(ctx, tc.dialect, tc.dsn)
			if err != nil {
				t.Fatal(err)
			}
			defer Release(db)
			component := "sqldb_test_" + t.Name()[len("TestMigrateBothDialects/"):]
			_, _ = db.ExecContext(ctx, `DROP TABLE IF EXISTS sqldb_test_items`)
			_, _ = db.ExecContext(ctx, db.Rebind(`DELETE FROM llm_schema_migrations WHERE component = ?`), component)
			migrations := []Migration{
				{SQLite: `CREATE TABLE sqldb_test_items (id INTEGER PRIMARY KEY, name TEXT NOT NULL)`},
				{SQLite: `ALTER TABLE sqldb_test_items ADD COLUMN note TEXT; INSERT INTO sqldb_test_items (id, name) VALUES (1, 'one')`},
			}
			for range 2 { // the second run must apply nothing
				if err := db.Migrate(ctx, component, migrations); err != nil {
					t.Fatal(err)
				}
			}
			var n int
			if err := db.QueryRowContext(ctx, db.Rebind(`SELECT COUNT(*) FROM sqldb_test_items WHERE name = ?`), "one").Scan(&n); err != nil {
				t.Fatal(err)
			}
			if n != 1 {
				t.Fatalf("got %d rows, want 1: a migration ran twice or not at all", n)
			}
			again, err := Open(ctx, tc.dialect, tc.dsn)
			if err != nil {
				t.Fatal(err)
			}
			if again.DB != db.DB {
				t.Error("a second Open of the same store made a second pool")
			}
			Release(again)
		})
	}
}

func TestParseDSNAndRedact(t *testing.T) {
	d, dsn, err := ParseDSN("sqlite:./llm.db")
	if err != nil || d != SQLite || dsn != "./llm.db" {
		t.Fatalf("sqlite: %q %q %v", d, dsn, err)
	}
	d, _, err = ParseDSN("postgres://u:pw@h/db")
	if err != nil || d != Postgres {
		t.Fatalf("postgres: %q %v", d, err)
	}
	if _, _, err := ParseDSN("mysql://x"); err == nil {
		t.Fatal("mysql accepted")
	}
	if got := redact("postgres://u:secret@h/db"); got != "postgres://u:xxxxx@h/db" {
		t.Fatalf("redact: %s", got)
	}
	if got := (&DB{Dialect: Postgres}).Rebind("a = ? AND b = ?"); got != "a = $1 AND b = $2" {
		t.Fatalf("rebind: %s", got)
	}
}
