package tests

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/roomcast/roomcast/tests/redisproc"
	"github.com/roomcast/roomcast/tests/testserver"
)

// Benchmarks of durable rooms against the real binary (docs/BENCHMARKS.md):
//
//	go test -run '^$' -bench 'Resume|JoinStart' -benchtime 20x ./tests/

func benchServers(b *testing.B) map[string]*testserver.Server {
	r := redisproc.Start(b)
	return map[string]*testserver.Server{
		"memory": testserver.Start(b, testserver.Options{}),
		"redis":  testserver.Start(b, testserver.Options{Env: map[string]string{"ROOMCAST_REDIS_URL": r.URL()}}),
	}
}

// postMessages stores n messages in room through the HTTP API.
func postMessages(b *testing.B, s *testserver.Server, room string, n int) {
	b.Helper()
	for i := 0; i < n; i++ {
		status, body := httpCall(b, http.MethodPost, s.URL+"/api/rooms/"+room+"/messages", testserver.APIKey,
			fmt.Sprintf(`{"data":{"n":%d,"text":"a stroke of about a hundred bytes: %s"}}`, i, strings.Repeat("x", 40)))
		if status != 202 {
			b.Fatalf("POST message: %d %s", status, body)
		}
	}
}

// Resume after 1,000 missed messages: from the welcome to the last
// replayed message, and from the dial.
func BenchmarkResume1000(b *testing.B) {
	for name, s := range benchServers(b) {
		b.Run(name, func(b *testing.B) {
			room := "bench-resume"
			c := testserver.Join(b, s.WS, room, "reader", "Reader")
			pos := c.Welcome.Position()
			c.Close()
			postMessages(b, s, room, 1000)
			tok := testserver.Token(b, "reader", "Reader", 0, nil)
			var welcomeToLast, dialToLast time.Duration
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				t0 := time.Now()
				ws, _, err := testserver.Dial(testserver.SinceURL(s.WS, room, tok, pos, nil), nil)
				if err != nil {
					b.Fatal(err)
				}
				var tw time.Time
				for n := 0; n < 1001; n++ {
					_, p, err := ws.ReadMessage()
					if err != nil {
						b.Fatal(err)
					}
					if n == 0 {
						tw = time.Now()
						if !strings.Contains(string(p), `"recovered":true`) {
							b.Fatalf("not recovered: %.300s", p)
						}
					}
				}
				end := time.Now()
				welcomeToLast += end.Sub(tw)
				dialToLast += end.Sub(t0)
				ws.Close()
			}
			b.ReportMetric(float64(welcomeToLast.Microseconds())/1000/float64(b.N), "ms-welcome-to-last")
			b.ReportMetric(float64(dialToLast.Microseconds())/1000/float64(b.N), "ms-dial-to-last")
		})
	}
}

// Join with since=start into a room whose state is 1 MiB: from the dial to
// the welcome (which carries the state) read whole.
func BenchmarkJoinStart1MiBState(b *testing.B) {
	for name, s := range benchServers(b) {
		b.Run(name, func(b *testing.B) {
			room := "bench-state"
			w := testserver.Join(b, s.WS, room, "writer", "Writer")
			ack := publishAckedB(b, w)
			blob := strings.Repeat("s", 1<<20-64)
			w.Send(b, map[string]any{"type": "state", "seq": ack, "data": map[string]any{"b": blob}, "ref": "st"})
			w.Await(b, wait, "state ack", func(f testserver.Frame) bool {
				if f.Type == "error" {
					b.Fatalf("state refused: %s", f.Raw)
				}
				return f.Type == "ack" && f.Ref == "st"
			})
			tok := testserver.Token(b, "reader", "Reader", 0, nil)
			var total time.Duration
			size := 0
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				t0 := time.Now()
				ws, _, err := testserver.Dial(testserver.SinceURL(s.WS, room, tok, "start", nil), nil)
				if err != nil {
					b.Fatal(err)
				}
				_, p, err := ws.ReadMessage()
				if err != nil {
					b.Fatal(err)
				}
				total += time.Since(t0)
				var f struct {
					State *json.RawMessage `json:"state"`
				}
				if err := json.Unmarshal(p, &f); err != nil || f.State == nil {
					b.Fatalf("welcome without state (%v): %.200s", err, p)
				}
				size = len(p)
				ws.Close()
			}
			b.ReportMetric(float64(total.Microseconds())/1000/float64(b.N), "ms-dial-to-welcome")
			b.ReportMetric(float64(size)/(1<<20), "MiB-welcome")
		})
	}
}

func publishAckedB(b *testing.B, c *testserver.Client) uint64 {
	b.Helper()
	c.Send(b, map[string]any{"type": "publish", "data": "x", "ref": "p"})
	f := c.Await(b, wait, "ack", func(f testserver.Frame) bool { return f.Type == "ack" && f.Ref == "p" })
	return f.Seq
}
