package tests

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/roomcast/roomcast/tests/testserver"
)

// idp is an identity provider's JWKS endpoint: it serves the public keys
// it holds and counts its requests.
type idp struct {
	srv      *httptest.Server
	requests atomic.Int64
	mu       sync.Mutex
	keys     []map[string]any
	failing  bool
}

func newIDP(t *testing.T) *idp {
	p := &idp{}
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		p.requests.Add(1)
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.failing {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"keys": p.keys})
	}))
	t.Cleanup(p.srv.Close)
	return p
}

// serve replaces the served keys.
func (p *idp) serve(keys ...map[string]any) {
	p.mu.Lock()
	p.keys = keys
	p.mu.Unlock()
}

func (p *idp) setFailing(f bool) {
	p.mu.Lock()
	p.failing = f
	p.mu.Unlock()
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func rsaJWK(kid string, k *rsa.PrivateKey) map[string]any {
	return map[string]any{"kty": "RSA", "kid": kid, "use": "sig",
		"n": b64(k.N.Bytes()), "e": b64(big.NewInt(int64(k.E)).Bytes())}
}

func ecJWK(kid string, k *ecdsa.PrivateKey) map[string]any {
	pub, err := k.PublicKey.ECDH()
	if err != nil {
		panic(err)
	}
	raw := pub.Bytes() // 0x04 || X || Y
	n := (len(raw) - 1) / 2
	return map[string]any{"kty": "EC", "kid": kid, "use": "sig", "crv": "P-256", "x": b64(raw[1 : 1+n]), "y": b64(raw[1+n:])}
}

// idpToken signs claims with key as alg, kid in the header ("" for none).
func idpToken(t testing.TB, m jwt.SigningMethod, kid string, key any, c jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(m, c)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// startIDPServer runs roomcast trusting only p's key set.
func startIDPServer(t *testing.T, p *idp, env map[string]string) *testserver.Server {
	e := map[string]string{"ROOMCAST_JWT_SECRET": "", "ROOMCAST_JWT_JWKS_URL": p.srv.URL + "/.well-known/jwks.json"}
	for k, v := range env {
		e[k] = v
	}
	return testserver.Start(t, testserver.Options{Env: e})
}

// wsStatus is the HTTP answer to an upgrade of /ws/room with tok: 101 when
// it went through.
func wsStatus(t testing.TB, s *testserver.Server, room, tok string) (int, []byte) {
	t.Helper()
	return upgradeRequest(t, testserver.WSURL(s.URL, room, tok), nil)
}

func mustRSA(t *testing.T) *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestIdentityProviderTokens: tokens an identity provider signed with RSA
// and EC keys verify against its JWKS (the kid picks the key); alg none,
// HS256 keyed with the RSA public key, a key of the wrong family and an
// unknown kid are refused with 401; a burst of unknown kids costs one
// fetch of the key set; mapped claims are read.
func TestIdentityProviderTokens(t *testing.T) {
	t.Parallel()
	rsaKey := mustRSA(t)
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p := newIDP(t)
	p.serve(rsaJWK("rsa-1", rsaKey), ecJWK("ec-1", ecKey))
	s := startIDPServer(t, p, map[string]string{"ROOMCAST_JWT_CLAIMS": "name:nickname,rooms:https://app.example/rooms,read:https://app.example/read"})
	if n := p.requests.Load(); n != 1 {
		t.Fatalf("JWKS fetched %d times at start, want 1", n)
	}

	rs := testserver.JoinURL(t, testserver.WSURL(s.WS, "idp-1", idpToken(t, jwt.SigningMethodRS256, "rsa-1", rsaKey, claims("ann", time.Hour))), nil)
	if rs.Welcome.Me.ID != "ann" || rs.Welcome.Me.Role != "write" {
		t.Fatalf("RS256 welcome: %s", rs.Welcome.Raw)
	}
	testserver.JoinURL(t, testserver.WSURL(s.WS, "idp-1", idpToken(t, jwt.SigningMethodPS256, "rsa-1", rsaKey, claims("pat", time.Hour))), nil)
	es := testserver.JoinURL(t, testserver.WSURL(s.WS, "idp-1", idpToken(t, jwt.SigningMethodES256, "ec-1", ecKey, claims("eve", time.Hour))), nil)
	if es.Welcome.Me.ID != "eve" {
		t.Fatalf("ES256 welcome: %s", es.Welcome.Raw)
	}
	// Without a kid the key set's keys of the token's family are tried.
	testserver.JoinURL(t, testserver.WSURL(s.WS, "idp-1", idpToken(t, jwt.SigningMethodES256, "", ecKey, claims("nokid", time.Hour))), nil)

	der, err := x509.MarshalPKIXPublicKey(&rsaKey.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	refused := map[string]string{
		"alg none":                  idpToken(t, jwt.SigningMethodNone, "rsa-1", jwt.UnsafeAllowNoneSignatureType, claims("mallory", time.Hour)),
		"HS256 keyed with the PEM":  idpToken(t, jwt.SigningMethodHS256, "rsa-1", pubPEM, claims("mallory", time.Hour)),
		"HS256 keyed with the DER":  idpToken(t, jwt.SigningMethodHS256, "rsa-1", der, claims("mallory", time.Hour)),
		"ES256 under the RSA kid":   idpToken(t, jwt.SigningMethodES256, "rsa-1", ecKey, claims("mallory", time.Hour)),
		"RS256 under the EC kid":    idpToken(t, jwt.SigningMethodRS256, "ec-1", rsaKey, claims("mallory", time.Hour)),
		"RS256 signed by a another": idpToken(t, jwt.SigningMethodRS256, "rsa-1", mustRSA(t), claims("mallory", time.Hour)),
		"expired":                   idpToken(t, jwt.SigningMethodRS256, "rsa-1", rsaKey, claims("mallory", -time.Minute)),
	}
	for name, tok := range refused {
		st, b := wsStatus(t, s, "idp-1", tok)
		if st != http.StatusUnauthorized {
			t.Fatalf("%s: HTTP %d %s, want 401", name, st, b)
		}
	}
	if n := p.requests.Load(); n != 1 {
		t.Fatalf("JWKS fetched %d times after tokens of known kids, want 1", n)
	}

	t.Run("claim mapping", func(t *testing.T) {
		c := claims("map-user", time.Hour)
		c["nickname"] = "Nick"
		c["name"] = "not this one"
		c["rooms"] = []string{"*"} // not read: rooms is mapped elsewhere
		c["https://app.example/rooms"] = []string{"team-*"}
		c["https://app.example/read"] = []string{"lobby"}
		tok := idpToken(t, jwt.SigningMethodRS256, "rsa-1", rsaKey, c)
		w := testserver.JoinURL(t, testserver.WSURL(s.WS, "team-a", tok), nil)
		if w.Welcome.Me.Name != "Nick" || w.Welcome.Me.Role != "write" {
			t.Fatalf("team-a welcome: %s", w.Welcome.Raw)
		}
		r := testserver.JoinURL(t, testserver.WSURL(s.WS, "lobby", tok), nil)
		if r.Welcome.Me.Role != "read" {
			t.Fatalf("lobby welcome: %s", r.Welcome.Raw)
		}
		if st, b := wsStatus(t, s, "elsewhere", tok); st != http.StatusForbidden {
			t.Fatalf("a room neither mapped claim lists: %d %s", st, b)
		}
	})

	t.Run("unknown kid burst", func(t *testing.T) {
		before := p.requests.Load()
		stranger := mustRSA(t)
		for i := 0; i < 8; i++ {
			st, b := wsStatus(t, s, "idp-1", idpToken(t, jwt.SigningMethodRS256, "no-such-kid", stranger, claims("x", time.Hour)))
			if st != http.StatusUnauthorized {
				t.Fatalf("unknown kid %d: HTTP %d %s", i, st, b)
			}
			if i == 0 && !strings.Contains(string(b), "does not list") {
				t.Fatalf("unknown kid answer: %s", b)
			}
		}
		if n := p.requests.Load() - before; n != 1 {
			t.Fatalf("a burst of unknown kids fetched the key set %d times, want 1", n)
		}
		// Known keys work throughout.
		testserver.JoinURL(t, testserver.WSURL(s.WS, "idp-1", idpToken(t, jwt.SigningMethodRS256, "rsa-1", rsaKey, claims("ann2", time.Hour))), nil)
	})
}

// TestIdentityProviderKeyRotation: the provider rotates its key (a new kid
// served, the old one removed): a token of the new key makes the server
// fetch the set again and goes through; a token of the removed key is
// refused from then on.
func TestIdentityProviderKeyRotation(t *testing.T) {
	t.Parallel()
	oldKey, newKey := mustRSA(t), mustRSA(t)
	p := newIDP(t)
	p.serve(rsaJWK("2026-01", oldKey))
	s := startIDPServer(t, p, nil)
	testserver.JoinURL(t, testserver.WSURL(s.WS, "rot", idpToken(t, jwt.SigningMethodRS256, "2026-01", oldKey, claims("ann", time.Hour))), nil)

	p.serve(rsaJWK("2026-02", newKey))
	before := p.requests.Load()
	w := testserver.JoinURL(t, testserver.WSURL(s.WS, "rot", idpToken(t, jwt.SigningMethodRS256, "2026-02", newKey, claims("bob", time.Hour))), nil)
	if w.Welcome.Me.ID != "bob" {
		t.Fatalf("welcome: %s", w.Welcome.Raw)
	}
	if n := p.requests.Load() - before; n != 1 {
		t.Fatalf("the new kid fetched the set %d times, want 1", n)
	}
	if st, b := wsStatus(t, s, "rot", idpToken(t, jwt.SigningMethodRS256, "2026-01", oldKey, claims("carl", time.Hour))); st != http.StatusUnauthorized {
		t.Fatalf("a token of the removed key: %d %s", st, b)
	}
}

// TestIdentityProviderDownAtStart: a key set that cannot be fetched at
// start does not stop the server (it logs it); once the provider answers,
// the first token fetches the set and goes through.
func TestIdentityProviderDownAtStart(t *testing.T) {
	t.Parallel()
	key := mustRSA(t)
	p := newIDP(t)
	p.serve(rsaJWK("k", key))
	p.setFailing(true)
	s := startIDPServer(t, p, nil)
	if !strings.Contains(s.Output(), "JWKS") {
		t.Fatalf("the failed fetch is not logged:\n%s", s.Output())
	}
	p.setFailing(false)
	testserver.JoinURL(t, testserver.WSURL(s.WS, "up", idpToken(t, jwt.SigningMethodRS256, "k", key, claims("ann", time.Hour))), nil)
}
