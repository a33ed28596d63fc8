package webhook

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// The deliverer sends each room's events in order (first attempts),
// rooms side by side, retries a failed one with the same id, and stops
// when its context ends.
func TestDeliverOrderRetryAndStop(t *testing.T) {
	signer, err := ParseSecret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	first := map[string][]string{} // room -> members, first attempts in order
	tries := map[string]int{}
	delivered := map[string]int{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		id, ts := r.Header.Get("webhook-id"), r.Header.Get("webhook-timestamp")
		var sec int64
		fmt.Sscan(ts, &sec)
		if r.Header.Get("webhook-signature") != signer.Sign(id, sec, body) {
			t.Errorf("%s: bad signature", id)
		}
		var ev struct {
			Data struct {
				Room   string
				Member struct{ ID string }
			}
		}
		_ = json.Unmarshal(body, &ev)
		mu.Lock()
		defer mu.Unlock()
		tries[id]++
		if tries[id] == 1 {
			first[ev.Data.Room] = append(first[ev.Data.Room], ev.Data.Member.ID)
		}
		var n int
		fmt.Sscan(ev.Data.Member.ID[1:], &n)
		if n%5 == 0 && tries[id] == 1 {
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		delivered[id]++
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()

	o := Options{URLs: []string{srv.URL}, Signer: signer, Poll: 5 * time.Millisecond,
		Backoff: Backoff{Base: 10 * time.Millisecond, Max: 20 * time.Millisecond}}
	q, err := NewMemoryQueue(context.Background(), o, nil)
	if err != nil {
		t.Fatal(err)
	}
	w, err := New(q, o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { w.Run(ctx); close(done) }()
	const rooms, members = 3, 20
	for i := range members {
		for r := range rooms {
			q.MemberJoined(fmt.Sprint("room", r), []byte(fmt.Sprintf(`{"id":"u%d"}`, i)), false)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		n := len(delivered)
		mu.Unlock()
		if n == rooms*members && q.Len() == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d delivered, %d queued", n, rooms*members, q.Len())
		}
		time.Sleep(5 * time.Millisecond) // polling the receiver
	}
	cancel()
	<-done
	mu.Lock()
	defer mu.Unlock()
	for r := range rooms {
		got := first[fmt.Sprint("room", r)]
		for i, m := range got {
			if m != fmt.Sprint("u", i) {
				t.Fatalf("room%d first attempts %v, want u0…u%d in order", r, got, members-1)
			}
		}
	}
	for id, n := range delivered {
		if n != 1 {
			t.Fatalf("%s delivered %d times", id, n)
		}
		if tries[id] > 2 {
			t.Fatalf("%s tried %d times, want 1 or 2 (every fifth fails once)", id, tries[id])
		}
	}
}
