package store

import (
	"bufio"
	"context"
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func openSQLiteAt(t testing.TB, path string, o Options) *SQLite {
	t.Helper()
	s, err := OpenSQLite(context.Background(), path, o)
	if err != nil {
		t.Fatalf("OpenSQLite: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestSQLiteStore(t *testing.T) {
	testStore(t, func(t *testing.T) Store {
		// A directory that does not exist yet: the store makes it.
		return openSQLiteAt(t, filepath.Join(t.TempDir(), "data", "roomcast.db"), Options{})
	})
}

func TestSQLiteDurable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "roomcast.db")
	testDurable(t, func(t *testing.T) Store { return openSQLiteAt(t, path, Options{}) })
}

func TestSQLiteOptions(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	if _, err := OpenSQLite(ctx, filepath.Join(dir, "a.db"), Options{SQLiteSync: "OFF"}); err == nil {
		t.Fatal("SQLiteSync OFF was accepted")
	}
	if _, err := OpenSQLite(ctx, filepath.Join(dir, "a?b.db"), Options{}); err == nil {
		t.Fatal("a path with ? was accepted")
	}
	// NORMAL works, and the file is in WAL mode with the sync asked for.
	s := openSQLiteAt(t, filepath.Join(dir, "normal.db"), Options{SQLiteSync: "normal"})
	if err := s.Write(ctx, Op{Kind: OpMessage, Room: "r", Epoch: "e", Seq: 1}); err != nil {
		t.Fatal(err)
	}
	var mode string
	var sync int
	db := s.db.(*sqliteDB)
	if err := db.write.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
		t.Fatalf("journal_mode = %q, %v", mode, err)
	}
	if err := db.write.QueryRowContext(ctx, "PRAGMA synchronous").Scan(&sync); err != nil || sync != 1 {
		t.Fatalf("synchronous = %d, %v; want 1 (NORMAL)", sync, err)
	}
	full := openSQLiteAt(t, filepath.Join(dir, "full.db"), Options{})
	if err := full.db.(*sqliteDB).write.QueryRowContext(ctx, "PRAGMA synchronous").Scan(&sync); err != nil || sync != 2 {
		t.Fatalf("default synchronous = %d, %v; want 2 (FULL)", sync, err)
	}
	// The read pool cannot write.
	if _, err := db.read.ExecContext(ctx, "DELETE FROM rooms"); err == nil {
		t.Fatal("the read pool wrote")
	}
}

func TestSQLiteMigrations(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "roomcast.db")
	// Twice in a row, then four at once: each version applied once.
	for range 2 {
		s, err := OpenSQLite(ctx, path, Options{})
		if err != nil {
			t.Fatal(err)
		}
		s.Close()
	}
	concurrent := filepath.Join(t.TempDir(), "concurrent.db")
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			s, err := OpenSQLite(ctx, concurrent, Options{})
			if err != nil {
				t.Errorf("concurrent OpenSQLite: %v", err)
				return
			}
			s.Close()
		})
	}
	wg.Wait()
	ms, _ := migrationsOf("sqlite")
	for _, p := range []string{path, concurrent} {
		db, err := sql.Open("sqlite", p)
		if err != nil {
			t.Fatal(err)
		}
		var n, top int64
		if err := db.QueryRowContext(ctx, "SELECT count(*), max(version) FROM schema_migrations").Scan(&n, &top); err != nil {
			t.Fatal(err)
		}
		db.Close()
		if n != int64(len(ms)) || top != ms[len(ms)-1].version {
			t.Fatalf("%s: %d migrations recorded up to %d, want %d", p, n, top, len(ms))
		}
	}
}

// TestSQLiteCrash kills a process writing to the store with SIGKILL and
// checks that every Write it saw return is in the file.
func TestSQLiteCrash(t *testing.T) {
	if os.Getenv("ROOMCAST_STORE_CRASH_DB") != "" {
		t.Skip("in the child")
	}
	path := filepath.Join(t.TempDir(), "crash", "roomcast.db")
	cmd := exec.Command(os.Args[0], "-test.run=^TestSQLiteCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), "ROOMCAST_STORE_CRASH_DB="+path)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var acked uint64
	lines := bufio.NewScanner(out)
	for acked < 300 && lines.Scan() {
		if n, ok := strings.CutPrefix(lines.Text(), "acked "); ok {
			acked, _ = strconv.ParseUint(n, 10, 64)
		}
	}
	cmd.Process.Kill() // SIGKILL: no deferred Close, no flush
	cmd.Wait()
	if acked < 300 {
		t.Fatalf("the child acked %d writes before it ended: %s", acked, stderr.String())
	}

	s := openSQLiteAt(t, path, Options{})
	got, err := s.Load(context.Background(), "crash")
	if err != nil {
		t.Fatal(err)
	}
	if got.Epoch != "e1" || got.Seq < acked || uint64(len(got.Messages)) != got.Seq {
		t.Fatalf("acked %d, the store holds epoch %q seq %d with %d messages", acked, got.Epoch, got.Seq, len(got.Messages))
	}
	for i, m := range got.Messages {
		if m.Seq != uint64(i+1) || string(m.Frame) != string(frame(m.Seq)) {
			t.Fatalf("message %d = %+v", i, m)
		}
	}
	if got.Doc.Seq < acked/10 || got.State == nil || got.State.Seq < acked-acked%10 {
		t.Fatalf("acked %d: doc seq %d, state %+v", acked, got.Doc.Seq, got.State)
	}
}

// TestSQLiteCrashChild is TestSQLiteCrash's child: it writes until killed,
// saying on stdout which Write returned.
func TestSQLiteCrashChild(t *testing.T) {
	path := os.Getenv("ROOMCAST_STORE_CRASH_DB")
	if path == "" {
		t.Skip("run by TestSQLiteCrash")
	}
	s, err := OpenSQLite(context.Background(), path, Options{SQLiteSync: "NORMAL"})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for seq := uint64(1); time.Now().Before(deadline); seq++ {
		ops := []Op{{Kind: OpMessage, Room: "crash", Epoch: "e1", Seq: seq, Data: frame(seq), Keep: 1 << 30}}
		if seq%10 == 0 {
			ops = append(ops, Op{Kind: OpState, Room: "crash", Epoch: "e1", Seq: seq, Data: frame(seq)},
				Op{Kind: OpDocUpdate, Room: "crash", Epoch: "d1", Seq: seq / 10, Data: frame(seq)})
		}
		if err := s.Write(context.Background(), ops...); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(os.Stdout, "acked %d\n", seq)
	}
	t.Fatal("not killed within a minute")
}
