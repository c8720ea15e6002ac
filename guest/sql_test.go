package guest_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/llmoneapi/llmoneapi/guest"
)

// guest.SQL opens an SQLite file or a PostgreSQL database, runs ?-queries
// on either, and fails at Open when the check does.
func TestSQL(t *testing.T) {
	ctx := context.Background()
	file := filepath.Join(t.TempDir(), "g.db")
	for _, database := range []string{file, "sqlite:" + file, "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"} {
		t.Run(strings.SplitN(database, ":", 2)[0], func(t *testing.T) {
			s := &guest.SQL{Database: database}
			if err := s.Open(ctx, "SELECT 1"); err != nil {
				t.Fatal(err)
			}
			defer s.Cleanup()
			if _, err := s.Exec(ctx, "CREATE TABLE IF NOT EXISTS guest_sql_test (k TEXT, v INTEGER)"); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _, _ = s.Exec(ctx, "DROP TABLE guest_sql_test") })
			if _, err := s.Exec(ctx, "INSERT INTO guest_sql_test VALUES (?, ?)", "a", 7); err != nil {
				t.Fatal(err)
			}
			var v int
			if err := s.QueryRow(ctx, "SELECT v FROM guest_sql_test WHERE k = ?", "a").Scan(&v); err != nil || v != 7 {
				t.Fatalf("read %d, %v", v, err)
			}
		})
	}
	s := &guest.SQL{Database: file}
	err := s.Open(ctx, "SELECT x FROM missing_table")
	defer s.Cleanup()
	if err == nil || !strings.Contains(err.Error(), "missing_table") || !strings.Contains(err.Error(), file) {
		t.Errorf("a failing check: %v", err)
	}
	if err := (&guest.SQL{}).Open(ctx, ""); err == nil || !strings.Contains(err.Error(), "no database given") {
		t.Errorf("no database: %v", err)
	}
}
