package tests

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/roomcast/roomcast/tests/testserver"
)

// httpCall performs one HTTP request against the server and returns the
// status and body, failing the test on a transport error.
func httpCall(t testing.TB, method, url, bearer, body string) (int, []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, b, err := testserver.Do(ctx, method, url, bearer, body)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	return resp.StatusCode, b
}

// assertErrorBody checks the error body of SPEC.md exactly:
// {"error":{"code":"...","message":"..."}} and nothing else.
func assertErrorBody(t testing.TB, body []byte, code string) {
	t.Helper()
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil || len(top) != 1 || top["error"] == nil {
		t.Fatalf("error body is not {\"error\":{...}}: %s", body)
	}
	var e map[string]any
	if err := json.Unmarshal(top["error"], &e); err != nil || len(e) != 2 {
		t.Fatalf("error object is not {code, message}: %s", body)
	}
	c, _ := e["code"].(string)
	m, _ := e["message"].(string)
	if c != code || m == "" {
		t.Fatalf("error body %s: want code %q and a message", body, code)
	}
}

// upgradeRequest sends a WebSocket upgrade request with net/http so that a
// refusal's status and body can be read; a 101 is returned closed.
func upgradeRequest(t testing.TB, url string, header http.Header) (int, []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Sec-WebSocket-Version", "13")
	req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("upgrade %s: %v", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusSwitchingProtocols {
		return resp.StatusCode, nil
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return resp.StatusCode, b
}

// metric returns the value of an unlabelled series in /metrics, or -1 when
// the series is absent.
func metric(t testing.TB, s *testserver.Server, name string) float64 {
	t.Helper()
	status, body := httpCall(t, http.MethodGet, s.URL+"/metrics", "", "")
	if status != 200 {
		t.Fatalf("/metrics: HTTP %d", status)
	}
	return metricIn(body, name)
}

// metricIn returns the value of an unlabelled series in a /metrics body,
// or -1 when the series is absent or unreadable.
func metricIn(body []byte, name string) float64 {
	sc := bufio.NewScanner(bytes.NewReader(body))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 2 && f[0] == name {
			v, err := strconv.ParseFloat(f[1], 64)
			if err != nil {
				return -1
			}
			return v
		}
	}
	return -1
}

// eventually polls check until it returns nil, failing with its last error
// after within.
func eventually(t testing.TB, within time.Duration, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still not true after %v: %v", what, within, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// sign makes a JWT with any method and key, for tokens the server must
// refuse (or accept, for a public-key server).
func sign(t testing.TB, method jwt.SigningMethod, key any, claims jwt.MapClaims) string {
	t.Helper()
	tok, err := jwt.NewWithClaims(method, claims).SignedString(key)
	if err != nil {
		t.Fatalf("sign %s: %v", method.Alg(), err)
	}
	return tok
}

// claims returns valid roomcast claims for sub, expiring in ttl.
func claims(sub string, ttl time.Duration) jwt.MapClaims {
	now := time.Now()
	return jwt.MapClaims{"sub": sub, "iat": now.Unix(), "exp": now.Add(ttl).Unix()}
}

// members reads GET /api/rooms/{room}/members with the API key.
func members(t testing.TB, s *testserver.Server, room string) []testserver.Member {
	t.Helper()
	status, body := httpCall(t, http.MethodGet, s.URL+"/api/rooms/"+room+"/members", testserver.APIKey, "")
	if status != 200 {
		t.Fatalf("members of %s: HTTP %d %s", room, status, body)
	}
	var r struct {
		Room    string              `json:"room"`
		Members []testserver.Member `json:"members"`
	}
	if err := json.Unmarshal(body, &r); err != nil || r.Room != room || r.Members == nil {
		t.Fatalf("members body %s (err %v)", body, err)
	}
	return r.Members
}

// compactJSON normalises a JSON value for comparison: compact, object keys
// sorted, numbers as written.
func compactJSON(raw []byte) string {
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return "!" + string(raw)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return "!" + string(raw)
	}
	return string(b)
}

func memberString(m testserver.Member) string {
	return fmt.Sprintf("{id:%s name:%s conns:%d since:%d meta:%s}", m.ID, m.Name, m.Conns, m.Since, compactJSON(m.Meta))
}

type jwtClaims struct {
	Exp int64 `json:"exp"`
}

// decodeJWTPayload reads a token's claims without verifying it.
func decodeJWTPayload(tok string, v any) error {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return fmt.Errorf("not a JWT")
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// fence consumes c's frames up to the answer of a ping: every frame the
// server queued for c before it is read and skipped.
func fence(t testing.TB, c *testserver.Client) {
	t.Helper()
	ref := fmt.Sprintf("fence-%d", time.Now().UnixNano())
	c.Send(t, map[string]any{"type": "ping", "ref": ref})
	c.Await(t, wait, "pong "+ref, func(f testserver.Frame) bool { return f.Type == "pong" && f.Ref == ref })
}

// sameJSON reports whether got is the JSON value want, whatever the key
// order and spacing.
func sameJSON(got []byte, want string) bool { return compactJSON(got) == compactJSON([]byte(want)) }

// rssBytes returns the resident memory of process pid (VmRSS).
func rssBytes(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("read the server's memory: %v", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[0] == "VmRSS:" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				t.Fatalf("VmRSS line %q: %v", line, err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmRSS in /proc/pid/status")
	return 0
}
