package store

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The write path of a stored message: writers Write one OpMessage each at
// a time (as the engine does for each publish before it acks), each to its
// own room. With one writer every op is a transaction of its own; with
// many, group commit shares the transactions (and fsyncs) among them:
// compare ops/s between writers=1 and writers=64.
//
//	go test -run '^$' -bench WriteMessages -benchtime 3s ./rooms/store/

func BenchmarkSQLiteWriteMessages(b *testing.B) {
	for _, sync := range []string{"FULL", "NORMAL"} {
		for _, writers := range []int{1, 64} {
			b.Run(fmt.Sprintf("sync=%s/writers=%d", sync, writers), func(b *testing.B) {
				s := openSQLiteAt(b, filepath.Join(b.TempDir(), "bench.db"), Options{SQLiteSync: sync})
				benchWriteMessages(b, s, writers)
			})
		}
	}
}

func BenchmarkPostgresWriteMessages(b *testing.B) {
	for _, writers := range []int{1, 64} {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) {
			s := openPostgresAt(b, testPostgresDB(b), Options{})
			benchWriteMessages(b, s, writers)
		})
	}
}

var benchRun atomic.Int64

func benchWriteMessages(b *testing.B, s Store, writers int) {
	ctx := context.Background()
	run := benchRun.Add(1) // rooms of their own for every b.N the benchmark tries
	data := bytes.Repeat([]byte("x"), 200)
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for w := range writers {
		wg.Go(func() {
			room := fmt.Sprintf("bench.%d.%d", run, w)
			for seq := uint64(1); next.Add(1) <= int64(b.N); seq++ {
				if err := s.Write(ctx, Op{Kind: OpMessage, Room: room, Epoch: "e1", Seq: seq, Data: data, Keep: 1000}); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "ops/s")
}

// Loading a cold room (one the engine let go from memory): its position,
// a 1,000-message history window of 200-byte frames, a 10 KiB state and a
// 1 MiB document (a compacted base and 50 updates after it), read with
// one Load.
//
//	go test -run '^$' -bench LoadColdRoom -benchtime 3s ./rooms/store/

func BenchmarkSQLiteLoadColdRoom(b *testing.B) {
	benchLoadColdRoom(b, openSQLiteAt(b, filepath.Join(b.TempDir(), "bench.db"), Options{}))
}

func BenchmarkPostgresLoadColdRoom(b *testing.B) {
	benchLoadColdRoom(b, openPostgresAt(b, testPostgresDB(b), Options{}))
}

func benchLoadColdRoom(b *testing.B, s Store) {
	ctx := context.Background()
	const room = "cold"
	frame := bytes.Repeat([]byte("x"), 200)
	ops := make([]Op, 0, 1000)
	for seq := uint64(1); seq <= 1000; seq++ {
		ops = append(ops, Op{Kind: OpMessage, Room: room, Epoch: "e1", Seq: seq, Data: frame, Keep: 1000})
	}
	ops = append(ops, Op{Kind: OpState, Room: room, Epoch: "e1", Seq: 1000, Data: bytes.Repeat([]byte("s"), 10<<10)})
	for seq := uint64(1); seq <= 100; seq++ {
		ops = append(ops, Op{Kind: OpDocUpdate, Room: room, Epoch: "d1", Seq: seq, Data: bytes.Repeat([]byte("u"), 200)})
	}
	ops = append(ops, Op{Kind: OpDocBase, Room: room, Epoch: "d1", Seq: 50, Data: bytes.Repeat([]byte("b"), 1<<20-50*200)})
	if err := s.Write(ctx, ops...); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		r, err := s.Load(ctx, room)
		if err != nil {
			b.Fatal(err)
		}
		if len(r.Messages) != 1000 || r.Doc.Bytes() != 1<<20 || r.State == nil {
			b.Fatalf("loaded %d messages, a %d-byte document", len(r.Messages), r.Doc.Bytes())
		}
	}
}
