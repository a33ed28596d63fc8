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
