package store

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

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

// A Write while PostgreSQL is away for less than reconnectFor waits and
// commits once it is back (its pooled connections were all dropped); a
// longer outage fails the Write, and the next one after it commits.
func TestPostgresWriteRidesOutABriefOutage(t *testing.T) {
	ctx := context.Background()
	dbURL := testPostgresDB(t)
	s := openPostgresAt(t, dbURL, Options{})
	write := func(seq uint64) error {
		return s.Write(ctx, Op{Kind: OpMessage, Room: "r", Epoch: "e", Seq: seq, Data: fmt.Appendf(nil, "m%d", seq)})
	}
	if err := write(1); err != nil {
		t.Fatal(err)
	}
	restore := storetest.Outage(t, dbURL)
	go func() { time.Sleep(reconnectFor / 4); restore() }()
	start := time.Now()
	if err := write(2); err != nil {
		t.Fatalf("Write during a %v outage: %v", reconnectFor/4, err)
	}
	t.Logf("a Write during a %v outage committed after %v", reconnectFor/4, time.Since(start).Round(10*time.Millisecond))

	restore = storetest.Outage(t, dbURL)
	start = time.Now()
	if err := write(3); err == nil {
		t.Fatal("a Write with the database away for good committed")
	} else if d := time.Since(start); d > reconnectFor+time.Second {
		t.Fatalf("the failing Write took %v", d)
	}
	restore()
	if err := write(3); err != nil {
		t.Fatalf("the first Write after the outage: %v", err)
	}
	if got, err := s.Load(ctx, "r"); err != nil || got.Seq != 3 || len(got.Messages) != 3 {
		t.Fatalf("after the outages: %+v %v", got, err)
	}
}
