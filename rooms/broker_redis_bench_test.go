package rooms

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/roomcast/roomcast/tests/redisproc"
)

// processCPU is this process's user and system CPU time so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkRedisPublishMessage publishes stored messages one after the
// other from one goroutine, as a publisher's connection does: each waits
// for its seq. cpu-ns/op is this process's CPU per message (Redis's own
// is not in it), the figure an instance's publishers cost it; ns/op is
// mostly the round trip.
func BenchmarkRedisPublishMessage(b *testing.B) {
	srv := redisproc.Start(b)
	c := redis.NewClient(&redis.Options{Addr: srv.Addr(), DialTimeout: time.Second, MaxRetries: -1})
	o := RedisBrokerOptions{Prefix: "bench:", Stream: StreamOptions{HistorySize: 100}}
	br := NewRedisBroker(c, o)
	ctx := context.Background()
	if err := br.Start(ctx, newRecordingReceiver()); err != nil {
		b.Fatal(err)
	}
	defer func() { _ = br.Close(); _ = c.Close() }()
	frame := []byte(`{"type":"message","data":"` + fmt.Sprintf("%0100d", 0) + `"}`)
	b.ReportAllocs()
	cpu := processCPU()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := br.PublishMessage(ctx, "room", Message{ID: "m", Frame: frame, Stored: true}); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(processCPU()-cpu)/float64(b.N), "cpu-ns/op")
}
