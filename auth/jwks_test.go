package auth

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/big"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// jwksServer serves one RSA key under kid and counts its requests.
func jwksServer(t *testing.T, kid string, k *rsa.PrivateKey) (*httptest.Server, *atomic.Int64) {
	var n atomic.Int64
	b64 := base64.RawURLEncoding.EncodeToString
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		n.Add(1)
		_ = json.NewEncoder(w).Encode(map[string]any{"keys": []any{map[string]any{
			"kty": "RSA", "kid": kid, "n": b64(k.N.Bytes()), "e": b64(big.NewInt(int64(k.E)).Bytes())}}})
	}))
	t.Cleanup(srv.Close)
	return srv, &n
}

// TestJWKSRefresh: the sets are fetched again every Refresh, until the
// verifier's context ends.
func TestJWKSRefresh(t *testing.T) {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	srv, n := jwksServer(t, "k1", k)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	v, err := NewVerifier(ctx, Config{JWKSURLs: []string{srv.URL}, JWKS: JWKSOptions{Refresh: 20 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, valid())
	tok.Header["kid"] = "k1"
	s, err := tok.SignedString(k)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(ctx, s); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for n.Load() < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("fetched %d times in 5 s with a 20 ms refresh", n.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestJWKSConfig: a key set URL must be http(s) with a host, and does not
// go with a PEM public key.
func TestJWKSConfig(t *testing.T) {
	for _, u := range []string{"idp.example/jwks", "ftp://idp.example/jwks", "https:///jwks", "https://user:pw@idp.example/jwks"} {
		if _, err := NewVerifier(context.Background(), Config{JWKSURLs: []string{u}}); err == nil {
			t.Errorf("%q accepted", u)
		}
	}
	k, _ := rsa.GenerateKey(rand.Reader, 2048)
	srv, _ := jwksServer(t, "k1", k)
	_, err := NewVerifier(context.Background(), Config{JWKSURLs: []string{srv.URL}, PublicKeyPEM: []byte("x")})
	if err == nil {
		t.Fatal("a PEM key and a JWKS URL both accepted")
	}
	// An HS256 token is refused when no secret is configured, whatever
	// its key.
	v, err := NewVerifier(context.Background(), Config{JWKSURLs: []string{srv.URL}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(context.Background(), sign(t, jwt.SigningMethodHS256, []byte("any key"), valid())); !errors.Is(err, ErrInvalid) {
		t.Fatalf("HS256 with only a key set: %v", err)
	}
}
