package testserver

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
)

// Member is a presence member as the protocol sends it.
type Member struct {
	ID    string          `json:"id"`
	Name  string          `json:"name"`
	Role  string          `json:"role"`
	Meta  json.RawMessage `json:"meta"`
	Conns int             `json:"conns"`
	Since int64           `json:"since"`
}

// Frame is any server frame; fields not in a frame's type stay empty.
type Frame struct {
	Type     string          `json:"type"`
	Room     string          `json:"room"`
	Conn     string          `json:"conn"`
	Instance string          `json:"instance"`
	Me       *Member         `json:"me"`
	Members  []Member        `json:"members"`
	Member   *Member         `json:"member"`
	Reason   string          `json:"reason"`
	ID       string          `json:"id"`
	From     *From           `json:"from"`
	TS       int64           `json:"ts"`
	Data     json.RawMessage `json:"data"`
	Ref      string          `json:"ref"`
	Code     string          `json:"code"`
	Message  string          `json:"message"`
	// Durable rooms: the position of a welcome or a stored message, and
	// the welcome's resume outcome and state.
	Epoch     string         `json:"epoch"`
	Seq       uint64         `json:"seq"`
	Recovered *bool          `json:"recovered"`
	State     *StateSnapshot `json:"state"`
	// presence=count: the welcome's and count frames' member count.
	Count *int   `json:"count"`
	Raw   string `json:"-"`
}

// StateSnapshot is a room's state as the server sends it.
type StateSnapshot struct {
	Seq  uint64          `json:"seq"`
	Data json.RawMessage `json:"data"`
}

// From is the sender of a message frame.
type From struct {
	User string `json:"user"`
	Conn string `json:"conn"`
}

// Client is a real WebSocket client that collects every frame it reads.
type Client struct {
	WS      *websocket.Conn
	Welcome Frame

	mu        sync.Mutex
	cond      *sync.Cond
	frames    []Frame
	pos       int
	closed    bool
	closeCode int
	closeErr  error
}

// WSURL is the join URL of room with token.
func WSURL(base, room, token string) string {
	u := base + "/ws/" + room
	if token != "" {
		u += "?token=" + url.QueryEscape(token)
	}
	return u
}

// Dial opens a WebSocket without reading from it. resp is the HTTP answer,
// also when the upgrade was refused.
func Dial(rawURL string, header http.Header) (*websocket.Conn, *http.Response, error) {
	d := websocket.Dialer{HandshakeTimeout: 5 * time.Second}
	return d.Dial(rawURL, header)
}

// Join connects to room as a user and waits for the welcome.
func Join(t testing.TB, base, room, sub, name string) *Client {
	t.Helper()
	return JoinURL(t, WSURL(base, room, Token(t, sub, name, 0, nil)), nil)
}

// JoinURL connects to a ws URL and waits for the welcome.
func JoinURL(t testing.TB, rawURL string, header http.Header) *Client {
	t.Helper()
	ws, resp, err := Dial(rawURL, header)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("dial %s: %v (HTTP %d)", rawURL, err, status)
	}
	c := Read(ws)
	t.Cleanup(c.Close)
	c.Welcome = c.Next(t, 5*time.Second)
	if c.Welcome.Type != "welcome" {
		t.Fatalf("first frame is %q, want welcome: %s", c.Welcome.Type, c.Welcome.Raw)
	}
	return c
}

// Read starts collecting ws's frames.
func Read(ws *websocket.Conn) *Client {
	c := &Client{WS: ws}
	c.cond = sync.NewCond(&c.mu)
	go c.readLoop()
	return c
}

func (c *Client) readLoop() {
	for {
		_, data, err := c.WS.ReadMessage()
		c.mu.Lock()
		if err != nil {
			c.closed = true
			c.closeErr = err
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				c.closeCode = ce.Code
			}
			c.cond.Broadcast()
			c.mu.Unlock()
			return
		}
		var f Frame
		if jerr := json.Unmarshal(data, &f); jerr != nil {
			f.Type = "!invalid-json"
		}
		f.Raw = string(data)
		c.frames = append(c.frames, f)
		c.cond.Broadcast()
		c.mu.Unlock()
	}
}

// Next returns the next unread frame, failing the test after within.
func (c *Client) Next(t testing.TB, within time.Duration) Frame {
	t.Helper()
	f, err := c.next(within, func(Frame) bool { return true }, false)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// Await returns the next frame for which match is true; frames before it
// are consumed.
func (c *Client) Await(t testing.TB, within time.Duration, what string, match func(Frame) bool) Frame {
	t.Helper()
	f, err := c.next(within, match, true)
	if err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
	return f
}

// AwaitType waits for the next frame of type typ.
func (c *Client) AwaitType(t testing.TB, typ string, within time.Duration) Frame {
	t.Helper()
	return c.Await(t, within, typ, func(f Frame) bool { return f.Type == typ })
}

func (c *Client) next(within time.Duration, match func(Frame) bool, skip bool) (Frame, error) {
	deadline := time.Now().Add(within)
	timer := time.AfterFunc(within, func() { c.mu.Lock(); c.cond.Broadcast(); c.mu.Unlock() })
	defer timer.Stop()
	c.mu.Lock()
	defer c.mu.Unlock()
	for {
		for c.pos < len(c.frames) {
			f := c.frames[c.pos]
			c.pos++
			if match(f) {
				return f, nil
			}
			if !skip {
				return f, fmt.Errorf("unexpected frame %s", f.Raw)
			}
		}
		if c.closed {
			return Frame{}, fmt.Errorf("socket closed (code %d: %v) before the frame arrived", c.closeCode, c.closeErr)
		}
		if !time.Now().Before(deadline) {
			return Frame{}, fmt.Errorf("no frame within %v", within)
		}
		c.cond.Wait()
	}
}

// Frames returns every frame read so far.
func (c *Client) Frames() []Frame {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Frame(nil), c.frames...)
}

// Send writes v as a JSON text frame.
func (c *Client) Send(t testing.TB, v any) {
	t.Helper()
	var data []byte
	switch x := v.(type) {
	case string:
		data = []byte(x)
	case []byte:
		data = x
	default:
		var err error
		if data, err = json.Marshal(v); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.WS.WriteMessage(websocket.TextMessage, data); err != nil {
		t.Fatalf("send: %v", err)
	}
}

// WaitClose waits until the server closes the socket and returns the close
// code (0 when the socket ended without a close frame).
func (c *Client) WaitClose(t testing.TB, within time.Duration) int {
	t.Helper()
	timer := time.AfterFunc(within, func() { c.mu.Lock(); c.cond.Broadcast(); c.mu.Unlock() })
	defer timer.Stop()
	deadline := time.Now().Add(within)
	c.mu.Lock()
	defer c.mu.Unlock()
	for !c.closed {
		if !time.Now().Before(deadline) {
			t.Fatalf("socket still open after %v", within)
		}
		c.cond.Wait()
	}
	return c.closeCode
}

// Close closes the socket with 1000 and waits briefly for the server's answer.
func (c *Client) Close() {
	_ = c.WS.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
	timer := time.AfterFunc(2*time.Second, func() { _ = c.WS.Close() })
	c.mu.Lock()
	for !c.closed {
		c.cond.Wait()
	}
	c.mu.Unlock()
	timer.Stop()
	_ = c.WS.Close()
}

// JoinSince joins room as a user with the since parameter (empty for
// none) and extra query parameters, and waits for the welcome.
func JoinSince(t testing.TB, base, room, sub, name, since string, extra url.Values) *Client {
	t.Helper()
	return JoinURL(t, SinceURL(base, room, Token(t, sub, name, 0, nil), since, extra), nil)
}

// SinceURL is the join URL of room with token, since (empty for none) and
// extra query parameters.
func SinceURL(base, room, token, since string, extra url.Values) string {
	q := url.Values{}
	for k, v := range extra {
		q[k] = v
	}
	if token != "" {
		q.Set("token", token)
	}
	if since != "" {
		q.Set("since", since)
	}
	return base + "/ws/" + room + "?" + q.Encode()
}

// Position is the welcome's epoch:seq, the since of a resume.
func (f Frame) Position() string { return fmt.Sprintf("%s:%d", f.Epoch, f.Seq) }
