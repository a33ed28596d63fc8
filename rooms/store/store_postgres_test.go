package store

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/roomcast/roomcast/rooms/store/storetest"
)

func testPostgresDB(t testing.TB) string { return storetest.PostgresDB(t, "roomcast_test") }

func openPostgresAt(t testing.TB, dbURL string, o Options) *Postgres {
	t.Helper()
	s, err := OpenPostgres(context.Background(), dbURL, o)
	if err != nil {
		t.Fatalf("OpenPostgres: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestPostgresStore(t *testing.T) {
	testStore(t, func(t *testing.T) Store { return openPostgresAt(t, testPostgresDB(t), Options{}) })
}

func TestPostgresDurable(t *testing.T) {
	dbURL := testPostgresDB(t)
	testDurable(t, func(t *testing.T) Store { return openPostgresAt(t, dbURL, Options{}) })
}

func TestPostgresMigrations(t *testing.T) {
	ctx := context.Background()
	dbURL := testPostgresDB(t)
	// Four instances starting at once on a fresh database, then one more.
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			s, err := OpenPostgres(ctx, dbURL, Options{})
			if err != nil {
				t.Errorf("concurrent OpenPostgres: %v", err)
				return
			}
			s.Close()
		})
	}
	wg.Wait()
	s := openPostgresAt(t, dbURL, Options{})
	ms, _ := migrationsOf("postgres")
	var n, top int64
	if err := s.pool.QueryRow(ctx, "SELECT count(*), max(version) FROM schema_migrations").Scan(&n, &top); err != nil {
		t.Fatal(err)
	}
	if n != int64(len(ms)) || top != ms[len(ms)-1].version {
		t.Fatalf("%d migrations recorded up to %d, want %d", n, top, len(ms))
	}
	if err := s.Write(ctx, Op{Kind: OpMessage, Room: "r", Epoch: "e", Seq: 1}); err != nil {
		t.Fatal(err)
	}
}

func TestPostgresBadURL(t *testing.T) {
	_, err := OpenPostgres(context.Background(), "postgres://user:secret@[::1", Options{})
	if err == nil || strings.Contains(err.Error(), "secret") {
		t.Fatalf("OpenPostgres = %v", err)
	}
}

// Two instances writing snapshots of one room at once: the furthest one
// is what stays, whichever commits last.
func TestPostgresSnapshotsFromTwoInstances(t *testing.T) {
	ctx := context.Background()
	dbURL := testPostgresDB(t)
	a, b := openPostgresAt(t, dbURL, Options{}), openPostgresAt(t, dbURL, Options{})
	var wg sync.WaitGroup
	for i := range 40 {
		s := a
		if i%2 == 1 {
			s = b
		}
		wg.Go(func() {
			seq := uint64((i * 7) % 40) // every seq 0…39 once, out of order
			snap := &Room{Epoch: "e1", Seq: seq, State: &State{Seq: seq, Data: fmt.Appendf(nil, "%d", seq)},
				Doc: Doc{Epoch: "d1", Seq: seq, BaseSeq: seq, Base: []byte("b")}}
			if err := s.Write(ctx, Op{Kind: OpSnapshot, Room: "shared", Snapshot: snap}); err != nil {
				t.Errorf("snapshot %d: %v", seq, err)
			}
		})
	}
	wg.Wait()
	got, err := a.Load(ctx, "shared")
	if err != nil || got.Seq != 39 || got.Doc.Seq != 39 || string(got.State.Data) != "39" {
		t.Fatalf("after racing snapshots: %+v, %v", got, err)
	}
}
