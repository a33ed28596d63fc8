package testserver

import (
	"fmt"
	"net/http"
	"time"
)

// The Try* helpers report errors instead of failing the test, for use from
// goroutines other than the test's own (where t.Fatal must not be called).

// TryJoinURL connects to a ws URL and waits for the welcome. The caller
// closes the returned client.
func TryJoinURL(rawURL string, header http.Header) (*Client, error) {
	ws, resp, err := Dial(rawURL, header)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		return nil, fmt.Errorf("dial %s: %v (HTTP %d)", rawURL, err, status)
	}
	c := Read(ws)
	f, err := c.next(5*time.Second, func(Frame) bool { return true }, false)
	if err != nil {
		c.Close()
		return nil, err
	}
	if f.Type != "welcome" {
		c.Close()
		return nil, fmt.Errorf("first frame is %q, want welcome: %s", f.Type, f.Raw)
	}
	c.Welcome = f
	return c, nil
}

// TryAwait returns the next frame for which match is true, or an error
// after within; frames before it are consumed.
func (c *Client) TryAwait(within time.Duration, match func(Frame) bool) (Frame, error) {
	return c.next(within, match, true)
}

// CloseCode reports whether the socket has ended and with which close code
// (0 when it ended without a close frame).
func (c *Client) CloseCode() (closed bool, code int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed, c.closeCode
}
