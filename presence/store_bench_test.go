package presence

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/roomcast/roomcast/tests/redisproc"
)

type nopPublisher struct{}

func (nopPublisher) Publish(context.Context, string, string, []byte) error { return nil }

// benchJoinLeave measures one user's join and leave in a room that already
// has 100 members: the presence work of one connection's lifetime. ready,
// if set, runs just before the measured part.
func benchJoinLeave(b *testing.B, s Store, ready func()) {
	ctx := context.Background()
	for i := 0; i < 100; i++ {
		if _, err := s.Join(ctx, Session{Room: "bench", Conn: fmt.Sprint("base-", i), User: fmt.Sprint("u", i), Name: "user"}); err != nil {
			b.Fatal(err)
		}
	}
	if ready != nil {
		ready()
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		conn := fmt.Sprint("c", i)
		if _, err := s.Join(ctx, Session{Room: "bench", Conn: conn, User: "visitor", Name: "Visitor"}); err != nil {
			b.Fatal(err)
		}
		if err := s.Leave(ctx, "bench", conn, "visitor"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkMemoryStoreJoinLeave(b *testing.B) {
	benchJoinLeave(b, NewMemoryStore(Options{}, nopPublisher{}), nil)
}

// BenchmarkRedisStoreJoinLeave also reports Redis's own time per join and
// leave ("redis-µs/op": the usec INFO commandstats gives EVALSHA, which
// includes the commands the scripts call).
func BenchmarkRedisStoreJoinLeave(b *testing.B) {
	srv := redisproc.Start(b)
	c := srv.Client(b)
	s := NewRedisStore(c, RedisOptions{})
	if err := s.Sweep(context.Background()); err != nil { // reads the Redis clock, as the keeper does every second
		b.Fatal(err)
	}
	benchJoinLeave(b, s, func() {
		if err := c.ConfigResetStat(context.Background()).Err(); err != nil {
			b.Fatal(err)
		}
	})
	b.StopTimer()
	info, err := c.Info(context.Background(), "commandstats").Result()
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(info, "\n") {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "cmdstat_evalsha:"); ok {
			for _, kv := range strings.Split(rest, ",") {
				if v, ok := strings.CutPrefix(kv, "usec="); ok {
					usec, _ := strconv.ParseFloat(v, 64)
					b.ReportMetric(usec/float64(b.N), "redis-µs/op")
				}
			}
		}
	}
}

// BenchmarkRedisHeartbeat10k is one heartbeat tick of an instance holding
// 10,000 connections in 100 rooms: one pipelined round trip.
func BenchmarkRedisHeartbeat10k(b *testing.B) {
	srv := redisproc.Start(b)
	s := NewRedisStore(srv.Client(b), RedisOptions{})
	ctx := context.Background()
	sessions := make([]Session, 10000)
	for i := range sessions {
		sessions[i] = Session{Room: fmt.Sprint("room-", i%100), Conn: fmt.Sprint("c", i), User: fmt.Sprint("u", i), Name: "user"}
		if _, err := s.Join(ctx, sessions[i]); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := s.Heartbeat(ctx, sessions); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/10000, "µs/conn")
}
