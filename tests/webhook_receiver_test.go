package tests

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"
)

// A webhook as a receiver got it: one request.
type hook struct {
	ID      string
	Type    string
	Room    string
	Member  string // member.*: the member's id
	Reason  string
	Epoch   string
	Seq     uint64
	Bytes   int64
	Time    int64 // the body's timestamp, unix ms
	Status  int   // what the receiver answered
	Attempt int   // 1 for the first request with this webhook-id
	At      time.Time
}

// receiver is a real HTTP webhook receiver that checks every request's
// Standard Webhooks signature (with its own HMAC, not the server's code)
// and records what arrived.
type receiver struct {
	t      testing.TB
	srv    *httptest.Server
	secret string
	key    []byte

	mu     sync.Mutex
	hooks  []hook
	tries  map[string]int
	answer func(h hook) int // status to answer; nil: 204
}

func newReceiver(t testing.TB) *receiver {
	t.Helper()
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	r := &receiver{t: t, key: key, secret: "whsec_" + base64.StdEncoding.EncodeToString(key), tries: map[string]int{}}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) URL() string { return r.srv.URL + "/hooks" }

// env is the server configuration that sends webhooks to r.
func (r *receiver) env(more map[string]string) map[string]string {
	e := map[string]string{
		"ROOMCAST_WEBHOOK_URL":    r.URL(),
		"ROOMCAST_WEBHOOK_SECRET": r.secret,
	}
	for k, v := range more {
		e[k] = v
	}
	return e
}

func (r *receiver) setAnswer(f func(h hook) int) {
	r.mu.Lock()
	r.answer = f
	r.mu.Unlock()
}

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(req.Body)
	if err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	id, ts, sig := req.Header.Get("webhook-id"), req.Header.Get("webhook-timestamp"), req.Header.Get("webhook-signature")
	mac := hmac.New(sha256.New, r.key)
	fmt.Fprintf(mac, "%s.%s.", id, ts)
	mac.Write(body)
	want := "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
	if id == "" || sig != want {
		r.t.Errorf("webhook %q: signature %q, want %q", id, sig, want)
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || time.Since(time.Unix(sec, 0)).Abs() > 5*time.Minute {
		r.t.Errorf("webhook %q: timestamp %q is not now", id, ts)
	}
	var ev struct {
		Type      string `json:"type"`
		Timestamp int64  `json:"timestamp"`
		Data      struct {
			Room   string `json:"room"`
			Member *struct {
				ID string `json:"id"`
			} `json:"member"`
			Reason string `json:"reason"`
			Epoch  string `json:"epoch"`
			Seq    uint64 `json:"seq"`
			Bytes  int64  `json:"bytes"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &ev); err != nil || ev.Type == "" || ev.Data.Room == "" || ev.Timestamp == 0 {
		r.t.Errorf("webhook %q: body %s is not {type,timestamp,data:{room,…}}: %v", id, body, err)
	}
	h := hook{ID: id, Type: ev.Type, Room: ev.Data.Room, Reason: ev.Data.Reason, Epoch: ev.Data.Epoch, Seq: ev.Data.Seq,
		Bytes: ev.Data.Bytes, Time: ev.Timestamp, At: time.Now()}
	if ev.Data.Member != nil {
		h.Member = ev.Data.Member.ID
	}
	r.mu.Lock()
	r.tries[id]++
	h.Attempt = r.tries[id]
	h.Status = http.StatusNoContent
	if r.answer != nil {
		h.Status = r.answer(h)
	}
	r.hooks = append(r.hooks, h)
	r.mu.Unlock()
	w.WriteHeader(h.Status)
}

// all returns every request received, in order.
func (r *receiver) all() []hook {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]hook(nil), r.hooks...)
}

// delivered returns the events answered with a 2xx, in order.
func (r *receiver) delivered() []hook {
	var out []hook
	for _, h := range r.all() {
		if h.Status/100 == 2 {
			out = append(out, h)
		}
	}
	return out
}

// deliveredOf returns the delivered events of room, in order.
func (r *receiver) deliveredOf(room string) []hook {
	var out []hook
	for _, h := range r.delivered() {
		if h.Room == room {
			out = append(out, h)
		}
	}
	return out
}

// awaitDelivered waits until match holds for n delivered events of room.
func (r *receiver) awaitDelivered(t testing.TB, within time.Duration, room string, n int, what string, match func(hook) bool) []hook {
	t.Helper()
	var got []hook
	eventually(t, within, what, func() error {
		got = got[:0]
		for _, h := range r.deliveredOf(room) {
			if match == nil || match(h) {
				got = append(got, h)
			}
		}
		if len(got) < n {
			return fmt.Errorf("%d of %d delivered; room's events: %v", len(got), n, types(r.deliveredOf(room)))
		}
		return nil
	})
	return got
}

func types(hs []hook) []string {
	out := make([]string, len(hs))
	for i, h := range hs {
		out[i] = h.Type
		if h.Member != "" {
			out[i] += ":" + h.Member
		}
	}
	return out
}

func ofType(typ string) func(hook) bool { return func(h hook) bool { return h.Type == typ } }
