package tests

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/roomcast/roomcast/tests/testserver"
)

// TestRejectHS covers every refusal of an upgrade on a server with an HS256
// secret and an Origin allow-list, each answered as plain HTTP with the
// JSON error body, and the checks' order.
func TestRejectHS(t *testing.T) {
	t.Parallel()
	s := testserver.Start(t, testserver.Options{Env: map[string]string{"ROOMCAST_ALLOWED_ORIGINS": "https://app.example"}})
	good := testserver.Token(t, "alice", "Alice", 0, nil)
	secret := []byte(testserver.Secret)
	otherKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	noExp := jwt.MapClaims{"sub": "alice", "iat": time.Now().Unix()}
	noSub := jwt.MapClaims{"exp": time.Now().Add(time.Hour).Unix()}

	cases := []struct {
		name   string
		path   string // after /ws/
		token  string
		header http.Header
		plain  bool // no upgrade headers
		status int
		code   string
	}{
		{name: "plain GET", path: "doc-1?token=" + good, plain: true, status: 426, code: "upgrade_required"},
		{name: "plain GET bad room", path: "bad%20room", plain: true, status: 426, code: "upgrade_required"},
		{name: "bad room space", path: "bad%20room?token=" + good, status: 400, code: "bad_room"},
		{name: "bad room char", path: "room!?token=" + good, status: 400, code: "bad_room"},
		{name: "bad room unicode", path: "caf%C3%A9?token=" + good, status: 400, code: "bad_room"},
		{name: "bad room too long", path: strings.Repeat("r", 129) + "?token=" + good, status: 400, code: "bad_room"},
		{name: "bad room before token", path: "bad%20room", status: 400, code: "bad_room"},
		{name: "no token", path: "doc-1", status: 401, code: "token_missing"},
		{name: "empty bearer", path: "doc-1", header: http.Header{"Authorization": {"Bearer "}}, status: 401, code: "token_missing"},
		{name: "expired", path: "doc-1", token: sign(t, jwt.SigningMethodHS256, secret, claims("alice", -5*time.Second)), status: 401, code: "token_expired"},
		// exp is now or up to 1 s ago: within the verifier's leeway, but a
		// socket admitted with it would be closed with 4001 at once, after
		// a join and a leave that everyone in the room sees.
		{name: "expired within the leeway", path: "doc-1", token: sign(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"sub": "alice", "exp": time.Now().Unix()}), status: 401, code: "token_expired"},
		{name: "bad signature", path: "doc-1", token: sign(t, jwt.SigningMethodHS256, []byte("another-secret-0123456789abcdef0123"), claims("alice", time.Hour)), status: 401, code: "token_invalid"},
		{name: "alg none", path: "doc-1", token: sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, claims("alice", time.Hour)), status: 401, code: "token_invalid"},
		{name: "RS256 on HS server", path: "doc-1", token: sign(t, jwt.SigningMethodRS256, otherKey, claims("alice", time.Hour)), status: 401, code: "token_invalid"},
		{name: "malformed", path: "doc-1", token: "not.a.jwt", status: 401, code: "token_invalid"},
		{name: "no exp", path: "doc-1", token: sign(t, jwt.SigningMethodHS256, secret, noExp), status: 401, code: "token_invalid"},
		{name: "no sub", path: "doc-1", token: sign(t, jwt.SigningMethodHS256, secret, noSub), status: 401, code: "token_invalid"},
		{name: "meta over 1 KiB", path: "doc-1", token: sign(t, jwt.SigningMethodHS256, secret, withMeta(claims("alice", time.Hour), map[string]any{"x": strings.Repeat("m", 1100)})), status: 401, code: "token_invalid"},
		{name: "meta not an object", path: "doc-1", token: sign(t, jwt.SigningMethodHS256, secret, withMeta(claims("alice", time.Hour), []int{1})), status: 401, code: "token_invalid"},
		{name: "bad token in bearer header", path: "doc-1", header: http.Header{"Authorization": {"Bearer not.a.jwt"}}, status: 401, code: "token_invalid"},
		{name: "room not allowed", path: "other", token: testserver.Token(t, "alice", "", 0, []string{"doc-*"}), status: 403, code: "room_not_allowed"},
		{name: "room not allowed, empty list", path: "doc-1", token: testserver.Token(t, "alice", "", 0, []string{}), status: 403, code: "room_not_allowed"},
		{name: "wrong origin", path: "doc-1", token: good, header: http.Header{"Origin": {"https://evil.example"}}, status: 403, code: "origin_not_allowed"},
		{name: "origin on other port", path: "doc-1", token: good, header: http.Header{"Origin": {"https://app.example:8443"}}, status: 403, code: "origin_not_allowed"},
		{name: "origin http vs https", path: "doc-1", token: good, header: http.Header{"Origin": {"http://app.example"}}, status: 403, code: "origin_not_allowed"},
		{name: "token checked before origin", path: "doc-1", header: http.Header{"Origin": {"https://evil.example"}}, status: 401, code: "token_missing"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			url := s.URL + "/ws/" + c.path
			if c.token != "" {
				url += "?token=" + c.token
			}
			var status int
			var body []byte
			if c.plain {
				status, body = httpCall(t, http.MethodGet, url, "", "")
			} else {
				status, body = upgradeRequest(t, url, c.header)
			}
			if status != c.status {
				t.Fatalf("HTTP %d, want %d: %s", status, c.status, body)
			}
			assertErrorBody(t, body, c.code)
		})
	}

	// What must pass: a room the token's patterns allow, the allowed Origin,
	// no Origin at all (a non-browser client), and the token in an
	// Authorization: Bearer header instead of the query.
	t.Run("allowed", func(t *testing.T) {
		doc := testserver.JoinURL(t, testserver.WSURL(s.WS, "doc-7", testserver.Token(t, "carol", "", 0, []string{"doc-*", "exact"})), nil)
		exact := testserver.JoinURL(t, testserver.WSURL(s.WS, "exact", testserver.Token(t, "carol", "", 0, []string{"doc-*", "exact"})), nil)
		longest := strings.Repeat("a", 120) + "0._:-Z9z" // 128 bytes, every kind of character
		testserver.JoinURL(t, testserver.WSURL(s.WS, longest, good), nil)
		origin := testserver.JoinURL(t, testserver.WSURL(s.WS, "doc-1", good), http.Header{"Origin": {"https://app.example"}})
		noOrigin := testserver.JoinURL(t, testserver.WSURL(s.WS, "doc-1", good), nil)
		header := testserver.JoinURL(t, testserver.WSURL(s.WS, "doc-1", ""), http.Header{"Authorization": {"Bearer " + testserver.Token(t, "dave", "Dave", 0, nil)}})
		if header.Welcome.Me == nil || header.Welcome.Me.ID != "dave" || header.Welcome.Me.Name != "Dave" {
			t.Fatalf("bearer-header welcome: %s", header.Welcome.Raw)
		}
		// The token's meta is the member's initial meta.
		metaTok := sign(t, jwt.SigningMethodHS256, secret, withMeta(claims("erin", time.Hour), map[string]any{"color": "teal"}))
		meta := testserver.JoinURL(t, testserver.WSURL(s.WS, "doc-1", metaTok), nil)
		if meta.Welcome.Me == nil || !sameJSON(meta.Welcome.Me.Meta, `{"color":"teal"}`) || meta.Welcome.Me.Name != "erin" {
			t.Fatalf("welcome of a token with meta: %s", meta.Welcome.Raw)
		}
		for _, c := range []*testserver.Client{doc, exact, origin, noOrigin} {
			if c.Welcome.Me == nil || c.Welcome.Conn == "" {
				t.Fatalf("welcome: %s", c.Welcome.Raw)
			}
		}
		// The sockets work: a ping is answered.
		header.Send(t, map[string]any{"type": "ping", "ref": "p"})
		if p := header.AwaitType(t, "pong", wait); p.Ref != "p" {
			t.Fatalf("pong: %s", p.Raw)
		}
	})

	// Refused upgrades are counted; a refused socket never made anyone join.
	if n := len(members(t, s, "other")); n != 0 {
		t.Fatalf("room other has %d members after refusals", n)
	}
}

// TestRejectRS runs a server with an RSA public key (plus issuer and
// audience): RS256 tokens from the matching key pass, while an HS256 token
// "signed" with the public key PEM as HMAC secret (alg confusion), an RS256
// token from another key, alg none and wrong iss/aud are refused with 401.
func TestRejectRS(t *testing.T) {
	t.Parallel()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	other, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	keyFile := filepath.Join(t.TempDir(), "jwt.pub.pem")
	if err := os.WriteFile(keyFile, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	s := testserver.Start(t, testserver.Options{Env: map[string]string{
		"ROOMCAST_JWT_SECRET":          "", // empty is unset: the public key alone
		"ROOMCAST_JWT_PUBLIC_KEY_FILE": keyFile,
		"ROOMCAST_JWT_ISSUER":          "https://issuer.example",
		"ROOMCAST_JWT_AUDIENCE":        "roomcast",
	}})
	valid := func(sub string) jwt.MapClaims {
		c := claims(sub, time.Hour)
		c["iss"] = "https://issuer.example"
		c["aud"] = "roomcast"
		return c
	}
	with := func(c jwt.MapClaims, k string, v any) jwt.MapClaims { c[k] = v; return c }

	ok := testserver.JoinURL(t, testserver.WSURL(s.WS, "doc-1", sign(t, jwt.SigningMethodRS256, key, with(valid("alice"), "name", "Alice"))), nil)
	if ok.Welcome.Me == nil || ok.Welcome.Me.ID != "alice" || ok.Welcome.Me.Name != "Alice" {
		t.Fatalf("welcome: %s", ok.Welcome.Raw)
	}
	// RS512 and PS256 are the same key family and pass too.
	testserver.JoinURL(t, testserver.WSURL(s.WS, "doc-1", sign(t, jwt.SigningMethodPS256, key, valid("bob"))), nil)

	cases := []struct {
		name  string
		token string
		code  string
	}{
		{"HS256 with the public key as secret", sign(t, jwt.SigningMethodHS256, pemBytes, valid("mallory")), "token_invalid"},
		{"HS256 with the DER key as secret", sign(t, jwt.SigningMethodHS256, der, valid("mallory")), "token_invalid"},
		{"RS256 from another key", sign(t, jwt.SigningMethodRS256, other, valid("mallory")), "token_invalid"},
		{"alg none", sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, valid("mallory")), "token_invalid"},
		{"wrong issuer", sign(t, jwt.SigningMethodRS256, key, with(valid("mallory"), "iss", "https://evil.example")), "token_invalid"},
		{"no issuer", sign(t, jwt.SigningMethodRS256, key, with(valid("mallory"), "iss", nil)), "token_invalid"},
		{"wrong audience", sign(t, jwt.SigningMethodRS256, key, with(valid("mallory"), "aud", "someone-else")), "token_invalid"},
		{"expired", sign(t, jwt.SigningMethodRS256, key, with(valid("mallory"), "exp", time.Now().Add(-5*time.Second).Unix())), "token_expired"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			status, body := upgradeRequest(t, testserver.WSURL(s.URL, "doc-1", c.token), nil)
			if status != 401 {
				t.Fatalf("HTTP %d, want 401: %s", status, body)
			}
			assertErrorBody(t, body, c.code)
		})
	}
	// None of the refused tokens got in.
	for _, m := range members(t, s, "doc-1") {
		if m.ID == "mallory" {
			t.Fatalf("a refused token joined: %s", memberString(m))
		}
	}
}

func withMeta(c jwt.MapClaims, meta any) jwt.MapClaims {
	c["meta"] = meta
	return c
}
