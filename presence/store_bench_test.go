package presence

import (
	"context"
	"fmt"
	"testing"

	"github.com/roomcast/roomcast/tests/redisproc"
)

type nopPublisher struct{}

func (nopPublisher) Publish(context.Context, string, string, []byte) error { return nil }

// benchJoinLeave measures one user's join and leave in a room that already
// has 100 members: the presence work of one connection's lifetime.
func benchJoinLeave(b *testing.B, s Store) {
	ctx := context.Background()
	for i := 0; i < 100; i++ {
		if _, err := s.Join(ctx, Session{Room: "bench", Conn: fmt.Sprint("base-", i), User: fmt.Sprint("u", i), Name: "user"}); err != nil {
			b.Fatal(err)
		}
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
	benchJoinLeave(b, NewMemoryStore(Options{}, nopPublisher{}))
}

func BenchmarkRedisStoreJoinLeave(b *testing.B) {
	srv := redisproc.Start(b)
	benchJoinLeave(b, NewRedisStore(srv.Client(b), RedisOptions{}))
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
