package tests

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/fasthttp/websocket"

	"github.com/roomcast/roomcast/tests/testserver"
)

// Helpers of the durable-room tests: the HTTP API of a room's stream, a
// subscriber that resumes as the SDK does, and a publisher that re-sends
// with its key.

// messagesPage is the body of GET /api/rooms/{room}/messages.
type messagesPage struct {
	Room     string            `json:"room"`
	Epoch    string            `json:"epoch"`
	Seq      uint64            `json:"seq"`
	Complete bool              `json:"complete"`
	Messages []json.RawMessage `json:"messages"`
}

// frames decodes the page's message frames.
func (p messagesPage) frames(t testing.TB) []testserver.Frame {
	t.Helper()
	out := make([]testserver.Frame, len(p.Messages))
	for i, m := range p.Messages {
		if err := json.Unmarshal(m, &out[i]); err != nil {
			t.Fatalf("message %d of the page is not a frame: %s", i, m)
		}
		out[i].Raw = string(m)
	}
	return out
}

func (p messagesPage) seqs(t testing.TB) []uint64 {
	var out []uint64
	for _, f := range p.frames(t) {
		out = append(out, f.Seq)
	}
	return out
}

// getMessages reads GET /api/rooms/{room}/messages?query with the API key
// and fails unless it answers 200 with a well-formed page of room.
func getMessages(t testing.TB, s *testserver.Server, room, query string) messagesPage {
	t.Helper()
	u := s.URL + "/api/rooms/" + room + "/messages"
	if query != "" {
		u += "?" + query
	}
	status, body := httpCall(t, http.MethodGet, u, testserver.APIKey, "")
	if status != http.StatusOK {
		t.Fatalf("GET %s: HTTP %d %s", u, status, body)
	}
	var p messagesPage
	if err := json.Unmarshal(body, &p); err != nil || p.Room != room || p.Messages == nil {
		t.Fatalf("GET %s: body %s (err %v)", u, body, err)
	}
	return p
}

// statePage is the body of GET /api/rooms/{room}/state.
type statePage struct {
	Room  string                    `json:"room"`
	Epoch string                    `json:"epoch"`
	Seq   uint64                    `json:"seq"`
	State *testserver.StateSnapshot `json:"state"`
	raw   string
}

func getState(t testing.TB, s *testserver.Server, room string) statePage {
	t.Helper()
	u := s.URL + "/api/rooms/" + room + "/state"
	status, body := httpCall(t, http.MethodGet, u, testserver.APIKey, "")
	if status != http.StatusOK {
		t.Fatalf("GET %s: HTTP %d %s", u, status, body)
	}
	var top map[string]json.RawMessage
	var p statePage
	if err := json.Unmarshal(body, &top); err != nil || top["state"] == nil {
		t.Fatalf("GET %s: body %s has no state field (null or an object)", u, body)
	}
	if err := json.Unmarshal(body, &p); err != nil || p.Room != room || p.Epoch == "" {
		t.Fatalf("GET %s: body %s (err %v)", u, body, err)
	}
	p.raw = string(body)
	return p
}

// sendState sends a state frame with a ref and returns the answer: the
// ack or the error frame of that ref.
func sendState(t testing.TB, c *testserver.Client, seq uint64, data any) testserver.Frame {
	t.Helper()
	ref := fmt.Sprint("state-", time.Now().UnixNano())
	c.Send(t, map[string]any{"type": "state", "seq": seq, "data": data, "ref": ref})
	return c.Await(t, wait, "answer to "+ref, func(f testserver.Frame) bool {
		return (f.Type == "ack" || f.Type == "error") && f.Ref == ref
	})
}

// holdsSeq waits until c has read the stored message with seq, whether or
// not an Await already went past it.
func holdsSeq(t testing.TB, c *testserver.Client, seq uint64) {
	t.Helper()
	eventually(t, wait, fmt.Sprint("message seq ", seq), func() error {
		for _, f := range storedMessages(c) {
			if f.Seq == seq {
				return nil
			}
		}
		if closed, code := c.CloseCode(); closed {
			t.Fatalf("socket closed with %d before message seq %d", code, seq)
		}
		return fmt.Errorf("not read")
	})
}

// checkStream fails unless msgs are stored messages with consecutive seqs
// from first, each at most once.
func checkStream(t testing.TB, who string, msgs []testserver.Frame, first uint64) {
	t.Helper()
	for i, m := range msgs {
		if m.Seq != first+uint64(i) {
			t.Fatalf("%s: stored message %d has seq %d, want %d (seqs %v)", who, i, m.Seq, first+uint64(i), seqsOf(msgs))
		}
	}
}

func seqsOf(msgs []testserver.Frame) []uint64 {
	out := make([]uint64, len(msgs))
	for i, m := range msgs {
		out[i] = m.Seq
	}
	return out
}

// follower is a subscriber that, like the SDK, reconnects with its
// position when the server closes it with 4010 and keeps every stored
// message it got, across its connections.
type follower struct {
	name  string
	inst  *testserver.Server
	room  string
	token string
	epoch string

	mu      sync.Mutex
	cur     *testserver.Client // nil between connections
	kept    []testserver.Frame // stored messages of closed connections
	resumes int
}

func follow(t *testing.T, inst *testserver.Server, room, user string) *follower {
	t.Helper()
	tok := testserver.Token(t, user, user, 0, nil)
	c := testserver.JoinURL(t, testserver.WSURL(inst.WS, room, tok), nil)
	if c.Welcome.Epoch == "" {
		t.Fatalf("%s: welcome without an epoch: %s", user, c.Welcome.Raw)
	}
	f := &follower{name: user, inst: inst, room: room, token: tok, epoch: c.Welcome.Epoch, cur: c}
	t.Cleanup(func() {
		f.mu.Lock()
		cur := f.cur
		f.mu.Unlock()
		if cur != nil {
			cur.Close()
		}
	})
	return f
}

// messages returns every stored message the follower holds, reconnecting
// first when its socket was closed with 4010. A close with another code,
// or a resume the server could not give, is an error.
func (f *follower) messages() ([]testserver.Frame, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.cur != nil {
		if closed, code := f.cur.CloseCode(); closed {
			if code != 4010 {
				return nil, fmt.Errorf("%s: socket closed with %d, not 4010", f.name, code)
			}
			f.kept = append(f.kept, storedMessages(f.cur)...)
			f.cur = nil
		}
	}
	if f.cur == nil {
		var last uint64
		if len(f.kept) > 0 {
			last = f.kept[len(f.kept)-1].Seq
		}
		since := fmt.Sprintf("%s:%d", f.epoch, last)
		c, err := testserver.TryJoinURL(testserver.SinceURL(f.inst.WS, f.room, f.token, since, nil), nil)
		if err != nil {
			return append([]testserver.Frame(nil), f.kept...), nil // not yet: try again on the next call
		}
		if w := c.Welcome; w.Recovered == nil || !*w.Recovered || w.Epoch != f.epoch {
			c.Close()
			return nil, fmt.Errorf("%s: resume at %s not recovered: %s", f.name, since, w.Raw)
		}
		f.cur = c
		f.resumes++
	}
	return append(append([]testserver.Frame(nil), f.kept...), storedMessages(f.cur)...), nil
}

// awaitAll waits until every follower holds exactly the stored messages
// of want (seq -> id), seqs 1..len(want) in order, each once.
func awaitAll(t *testing.T, within time.Duration, fs []*follower, want map[uint64]string) {
	t.Helper()
	for _, f := range fs {
		var msgs []testserver.Frame
		eventually(t, within, f.name+" holds every acked message", func() error {
			var err error
			if msgs, err = f.messages(); err != nil {
				t.Fatal(err)
			}
			if len(msgs) < len(want) {
				return fmt.Errorf("%d of %d messages", len(msgs), len(want))
			}
			return nil
		})
		checkStream(t, f.name, msgs, 1)
		if len(msgs) != len(want) {
			t.Fatalf("%s holds %d stored messages, %d were acked (seqs %v)", f.name, len(msgs), len(want), seqsOf(msgs))
		}
		for _, m := range msgs {
			if want[m.Seq] != m.ID {
				t.Fatalf("%s: seq %d is message %s, the ack said %s", f.name, m.Seq, m.ID, want[m.Seq])
			}
		}
		if f.resumes > 0 {
			t.Logf("%s resumed %d times after a 4010 close", f.name, f.resumes)
		}
	}
}

// keyedPublisher publishes n stored messages, one at a time, each with its
// own key, and re-sends one refused with "unavailable" (or not answered)
// with the same key, as the SDK does. It runs in its own goroutine: only
// it writes to c.
type keyedPublisher struct {
	c      *testserver.Client
	n      int
	every  time.Duration
	prefix string

	mu      sync.Mutex
	acked   map[uint64]string // seq -> id
	refused int               // unavailable errors and unanswered sends
	err     error
	done    chan struct{}
}

func startKeyedPublisher(c *testserver.Client, prefix string, n int, every time.Duration) *keyedPublisher {
	p := &keyedPublisher{c: c, n: n, every: every, prefix: prefix, acked: map[uint64]string{}, done: make(chan struct{})}
	go p.run()
	return p
}

func (p *keyedPublisher) run() {
	defer close(p.done)
	tick := time.NewTicker(p.every)
	defer tick.Stop()
	deadline := time.Now().Add(60 * time.Second)
	for i := 0; i < p.n; i++ {
		<-tick.C
		key := fmt.Sprintf("%s-%d", p.prefix, i)
		for attempt := 0; ; attempt++ {
			if time.Now().After(deadline) {
				p.fail(fmt.Errorf("message %s still not acked after 60s", key))
				return
			}
			ref := fmt.Sprintf("%s-%d", key, attempt)
			msg, _ := json.Marshal(map[string]any{"type": "publish", "data": key, "key": key, "ref": ref})
			if err := p.c.WS.WriteMessage(websocket.TextMessage, msg); err != nil {
				p.fail(fmt.Errorf("send %s: %v", ref, err))
				return
			}
			f, err := p.c.TryAwait(10*time.Second, func(f testserver.Frame) bool {
				return (f.Type == "ack" || f.Type == "error") && f.Ref == ref
			})
			if err != nil {
				if closed, _ := p.c.CloseCode(); closed {
					p.fail(fmt.Errorf("publisher's socket closed: %v", err))
					return
				}
				p.count() // unanswered: send it again
				continue
			}
			if f.Type == "error" {
				if f.Code != "unavailable" {
					p.fail(fmt.Errorf("publish %s refused: %s", ref, f.Raw))
					return
				}
				p.count()
				<-tick.C // a pause before the retry, as a backoff
				continue
			}
			if f.Seq == 0 || f.ID == "" {
				p.fail(fmt.Errorf("ack without id or seq: %s", f.Raw))
				return
			}
			p.mu.Lock()
			if prev, dup := p.acked[f.Seq]; dup && prev != f.ID {
				p.mu.Unlock()
				p.fail(fmt.Errorf("seq %d acked for %s and for %s", f.Seq, prev, f.ID))
				return
			}
			p.acked[f.Seq] = f.ID
			p.mu.Unlock()
			break
		}
	}
}

func (p *keyedPublisher) count() { p.mu.Lock(); p.refused++; p.mu.Unlock() }

func (p *keyedPublisher) fail(err error) { p.mu.Lock(); p.err = err; p.mu.Unlock() }

// ackedCount is how many messages were acked so far.
func (p *keyedPublisher) ackedCount() int { p.mu.Lock(); defer p.mu.Unlock(); return len(p.acked) }

// wait waits for the publisher to finish and returns seq -> id of every
// message acked.
func (p *keyedPublisher) wait(t *testing.T) map[uint64]string {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(90 * time.Second):
		t.Fatal("publisher did not finish within 90s")
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err != nil {
		t.Fatal(p.err)
	}
	if len(p.acked) != p.n {
		t.Fatalf("%d distinct seqs acked for %d messages", len(p.acked), p.n)
	}
	return p.acked
}

// awaitAcked waits until the publisher has n acks.
func (p *keyedPublisher) awaitAcked(t *testing.T, n int) {
	t.Helper()
	eventually(t, 30*time.Second, fmt.Sprintf("%d messages acked", n), func() error {
		p.mu.Lock()
		err := p.err
		p.mu.Unlock()
		if err != nil {
			t.Fatal(err)
		}
		if got := p.ackedCount(); got < n {
			return fmt.Errorf("%d acked", got)
		}
		return nil
	})
}

// rawKeys returns the top-level keys of a frame, for checks of fields that
// must be absent.
func rawKeys(t testing.TB, raw string) map[string]json.RawMessage {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal([]byte(raw), &m); err != nil {
		t.Fatalf("frame is not a JSON object: %s", raw)
	}
	return m
}

// roomToken is a user token for the listed rooms only.
func roomToken(t testing.TB, sub string, rooms ...string) string {
	return testserver.Token(t, sub, sub, 0, rooms)
}

// refusedCount is how many sends were refused or not answered so far.
func (p *keyedPublisher) refusedCount() int { p.mu.Lock(); defer p.mu.Unlock(); return p.refused }
