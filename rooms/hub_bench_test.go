package rooms

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/roomcast/roomcast/rooms/wire"
)

// discard is a Transport that costs nothing, so the benchmark measures the
// hub: envelope, fan-out, queueing and the writer's hand-off.
type discard struct{}

func (discard) WriteFrames([][]byte) error      { return nil }
func (discard) WriteControl(byte, []byte) error { return nil }
func (discard) WriteClose(int, string) error    { return nil }
func (discard) Abort()                          {}

// BenchmarkHubBroadcast publishes one 128-byte frame to a room of N local
// connections through the memory broker; ns/op is per published message,
// so per delivered frame it is ns/op ÷ N.
func BenchmarkHubBroadcast(b *testing.B) {
	for _, n := range []int{10, 100, 1000} {
		b.Run(fmt.Sprint("subs=", n), func(b *testing.B) {
			br := NewMemoryBroker(StreamOptions{})
			h := NewHub(br, HubOptions{})
			ctx := context.Background()
			if err := br.Start(ctx, h); err != nil {
				b.Fatal(err)
			}
			conns := make([]*Conn, n)
			for i := range conns {
				conns[i] = NewConn(fmt.Sprint("c", i), "room", "u", discard{}, ConnOptions{QueueSize: 1 << 20})
				if err := h.Add(ctx, conns[i]); err != nil {
					b.Fatal(err)
				}
				conns[i].Start(nil)
			}
			frame := make([]byte, 128)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := h.Publish(ctx, "room", "", frame); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			for _, c := range conns {
				c.Close(CloseNormal, "")
				c.Wait()
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/delivery")
		})
	}
}

// BenchmarkHubDeliverStored delivers stored envelopes, in seq order, to a
// room of 10 local connections: what every instance does for each stored
// message (position check, the frame's hash for fork detection, fan-out).
// ns/op is per message and includes sealing its envelope.
func BenchmarkHubDeliverStored(b *testing.B) {
	for _, size := range []int{128, 4096} {
		b.Run(fmt.Sprint("bytes=", size), func(b *testing.B) {
			br := NewMemoryBroker(StreamOptions{HistorySize: 100})
			h := NewHub(br, HubOptions{})
			ctx := context.Background()
			if err := br.Start(ctx, h); err != nil {
				b.Fatal(err)
			}
			conns := make([]*Conn, 10)
			for i := range conns {
				conns[i] = NewConn(fmt.Sprint("c", i), "room", "u", discard{}, ConnOptions{QueueSize: 1 << 20, QueueBytes: 1 << 40})
				if err := h.Add(ctx, conns[i]); err != nil {
					b.Fatal(err)
				}
				conns[i].Start(nil)
			}
			pos := conns[0].Position()
			frame := append(append([]byte(`{"type":"message","data":"`), bytes.Repeat([]byte("x"), size-30)...), `"}`...)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				h.Deliver("room", wire.SealStored("", pos.Epoch, pos.Seq+uint64(i)+1, false, frame))
			}
			b.StopTimer()
			for _, c := range conns {
				c.Close(CloseNormal, "")
				c.Wait()
			}
			if p := conns[0].Position(); p.Seq != pos.Seq+uint64(b.N) {
				b.Fatalf("delivered up to %+v, want seq %d", p, pos.Seq+uint64(b.N))
			}
		})
	}
}

// BenchmarkHubCoalescedBurst is a burst of 5 presence frames into a room
// of 100 local connections, then the batch going out (Flush, as the
// window's timer would): ns/op is per burst, one SendBatch per socket.
func BenchmarkHubCoalescedBurst(b *testing.B) {
	br := NewMemoryBroker(StreamOptions{})
	h := NewHub(br, HubOptions{Coalesce: func(f []byte) bool { return f[0] == 'p' }, CoalesceWindow: time.Hour, CoalesceEvery: time.Hour})
	ctx := context.Background()
	if err := br.Start(ctx, h); err != nil {
		b.Fatal(err)
	}
	conns := make([]*Conn, 100)
	for i := range conns {
		conns[i] = NewConn(fmt.Sprint("c", i), "room", "u", discard{}, ConnOptions{QueueSize: 1 << 20})
		if err := h.Add(ctx, conns[i]); err != nil {
			b.Fatal(err)
		}
		conns[i].Start(nil)
	}
	frame := append([]byte("p"), make([]byte, 200)...)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for range 5 {
			if err := h.Publish(ctx, "room", "", frame); err != nil {
				b.Fatal(err)
			}
		}
		h.Flush("room")
	}
	b.StopTimer()
	for _, c := range conns {
		c.Close(CloseNormal, "")
		c.Wait()
	}
}

// inlineDiscard is a Transport whose inline write takes every frame at
// once: deliveries never start a writer goroutine.
type inlineDiscard struct{ discard }

func (inlineDiscard) TryWrite([]byte) (bool, error)        { return true, nil }
func (inlineDiscard) TryWriteBatch([][]byte) (bool, error) { return true, nil }

// BenchmarkHubDeliverStoredInline is the fan-out benchmark's delivery on
// the instance that fans out: stored messages to rooms of 100 local
// connections that keep up, each frame written inline by the delivering
// goroutine. ns/delivery is everything a delivery costs besides the
// write(2) itself: position check, queue bound, the connection's lock and
// state, the hand-over to the transport. With 100 rooms (10,000
// connections, messages round robin) each delivery finds its connection
// out of the CPU's caches, as in the fan-out; with one it finds it in.
func BenchmarkHubDeliverStoredInline(b *testing.B) {
	for _, rooms := range []int{1, 100} {
		b.Run(fmt.Sprint("rooms=", rooms), func(b *testing.B) {
			const n = 100
			br := NewMemoryBroker(StreamOptions{HistorySize: 100})
			h := NewHub(br, HubOptions{})
			ctx := context.Background()
			if err := br.Start(ctx, h); err != nil {
				b.Fatal(err)
			}
			var conns []*Conn
			names := make([]string, rooms)
			pos := make([]Position, rooms)
			for r := range names {
				names[r] = fmt.Sprint("room", r)
				for i := 0; i < n; i++ {
					c := NewConn(fmt.Sprint("c", r, "-", i), names[r], "u", inlineDiscard{}, ConnOptions{QueueSize: 1024})
					if err := h.Add(ctx, c); err != nil {
						b.Fatal(err)
					}
					c.Start(nil)
					conns = append(conns, c)
				}
				pos[r] = conns[len(conns)-1].Position()
			}
			frame := append(append([]byte(`{"type":"message","data":"`), bytes.Repeat([]byte("x"), 100)...), `"}`...)
			payloads := make([][]byte, 0, 1024)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				r := i % rooms
				pos[r].Seq++
				if len(payloads) == cap(payloads) {
					payloads = payloads[:0]
				}
				// From the room's first connection, which it skips.
				payloads = append(payloads, wire.SealStored(conns[r*n].ID, pos[r].Epoch, pos[r].Seq, false, frame))
				h.Deliver(names[r], payloads[len(payloads)-1])
			}
			b.StopTimer()
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/delivery")
			for _, c := range conns {
				c.Close(CloseNormal, "")
				c.Wait()
			}
			if p := conns[1].Position(); rooms == 1 && p.Seq != pos[0].Seq {
				b.Fatalf("delivered up to %+v, want seq %d", p, pos[0].Seq)
			}
		})
	}
}
