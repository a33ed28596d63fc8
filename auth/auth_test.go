package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

var secret = []byte("0123456789abcdef0123456789abcdef")

func sign(t *testing.T, m jwt.SigningMethod, key any, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(m, claims).SignedString(key)
	if err != nil {
		t.Fatalf("sign: %v", err)
	}
	return s
}

func pubPEM(t *testing.T, pub any) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

func valid() jwt.MapClaims {
	return jwt.MapClaims{"sub": "alice", "exp": time.Now().Add(time.Hour).Unix()}
}

func with(kv ...any) jwt.MapClaims {
	c := valid()
	for i := 0; i < len(kv); i += 2 {
		if kv[i+1] == nil {
			delete(c, kv[i].(string))
		} else {
			c[kv[i].(string)] = kv[i+1]
		}
	}
	return c
}

func TestVerifyHMACRejections(t *testing.T) {
	v, err := NewVerifier(context.Background(), Config{Secret: secret, Issuer: "roomcast-test", Audience: "whiteboard"})
	if err != nil {
		t.Fatal(err)
	}
	ok := with("iss", "roomcast-test", "aud", "whiteboard")
	unsigned, err := jwt.NewWithClaims(jwt.SigningMethodNone, ok).SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		t.Fatal(err)
	}
	tampered := sign(t, jwt.SigningMethodHS256, secret, ok)
	tampered = tampered[:len(tampered)-4] + "AAAA"
	bigMeta := map[string]any{"x": strings.Repeat("a", MaxMetaBytes)}

	cases := []struct {
		name  string
		token string
		want  error
	}{
		{"missing", "", ErrMissing},
		{"malformed", "not.a.jwt", ErrInvalid},
		{"garbage", "abc", ErrInvalid},
		{"bad signature", tampered, ErrInvalid},
		{"other secret", sign(t, jwt.SigningMethodHS256, []byte("another-secret-another-secret!!"), ok), ErrInvalid},
		{"alg none", unsigned, ErrInvalid},
		{"expired", sign(t, jwt.SigningMethodHS256, secret, with("iss", "roomcast-test", "aud", "whiteboard", "exp", time.Now().Add(-3*time.Second).Unix())), ErrExpired},
		{"no exp", sign(t, jwt.SigningMethodHS256, secret, with("iss", "roomcast-test", "aud", "whiteboard", "exp", nil)), ErrInvalid},
		{"no sub", sign(t, jwt.SigningMethodHS256, secret, with("iss", "roomcast-test", "aud", "whiteboard", "sub", nil)), ErrInvalid},
		{"wrong iss", sign(t, jwt.SigningMethodHS256, secret, with("iss", "evil", "aud", "whiteboard")), ErrInvalid},
		{"no iss", sign(t, jwt.SigningMethodHS256, secret, with("aud", "whiteboard")), ErrInvalid},
		{"wrong aud", sign(t, jwt.SigningMethodHS256, secret, with("iss", "roomcast-test", "aud", "other")), ErrInvalid},
		{"meta too large", sign(t, jwt.SigningMethodHS256, secret, with("iss", "roomcast-test", "aud", "whiteboard", "meta", bigMeta)), ErrInvalid},
		{"meta not object", sign(t, jwt.SigningMethodHS256, secret, with("iss", "roomcast-test", "aud", "whiteboard", "meta", []int{1})), ErrInvalid},
		{"issued in the future", sign(t, jwt.SigningMethodHS256, secret, with("iss", "roomcast-test", "aud", "whiteboard", "iat", time.Now().Add(time.Minute).Unix())), ErrInvalid},
		{"not yet valid", sign(t, jwt.SigningMethodHS256, secret, with("iss", "roomcast-test", "aud", "whiteboard", "nbf", time.Now().Add(time.Minute).Unix())), ErrInvalid},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := v.Verify(context.Background(), tc.token)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Verify: got %v, want %v", err, tc.want)
			}
		})
	}

	t.Run("valid", func(t *testing.T) {
		c, err := v.Verify(context.Background(), sign(t, jwt.SigningMethodHS256, secret, with("iss", "roomcast-test", "aud", "whiteboard", "name", "Alice", "meta", map[string]any{"color": "red"}, "rooms", []string{"doc-*"})))
		if err != nil {
			t.Fatal(err)
		}
		if c.Subject != "alice" || c.Name != "Alice" || string(c.Meta) != `{"color":"red"}` || len(c.Rooms) != 1 {
			t.Fatalf("claims: %+v", c)
		}
	})
	t.Run("expired within leeway", func(t *testing.T) {
		// exp is whole seconds: a token that expired under a second ago passes.
		exp := time.Now().Truncate(time.Second)
		if time.Until(exp) < -800*time.Millisecond {
			exp = exp.Add(time.Second)
		}
		if _, err := v.Verify(context.Background(), sign(t, jwt.SigningMethodHS256, secret, with("iss", "roomcast-test", "aud", "whiteboard", "exp", exp.Unix()))); err != nil {
			t.Fatalf("token inside the 1s leeway rejected: %v", err)
		}
	})
}

func TestVerifyPublicKeyFamilies(t *testing.T) {
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	edPub, edPriv, _ := ed25519.GenerateKey(rand.Reader)

	rsaPEM := pubPEM(t, &rsaKey.PublicKey)
	cases := []struct {
		name   string
		pem    []byte
		good   string
		others []string
	}{
		{"RS256", rsaPEM, sign(t, jwt.SigningMethodRS256, rsaKey, valid()), []string{
			sign(t, jwt.SigningMethodES256, ecKey, valid()),
			// The classic confusion: HMAC keyed with the public key's PEM.
			sign(t, jwt.SigningMethodHS256, rsaPEM, valid()),
		}},
		{"ES256", pubPEM(t, &ecKey.PublicKey), sign(t, jwt.SigningMethodES256, ecKey, valid()), []string{
			sign(t, jwt.SigningMethodRS256, rsaKey, valid()),
			sign(t, jwt.SigningMethodHS256, pubPEM(t, &ecKey.PublicKey), valid()),
		}},
		{"EdDSA", pubPEM(t, edPub), sign(t, jwt.SigningMethodEdDSA, edPriv, valid()), []string{
			sign(t, jwt.SigningMethodHS256, secret, valid()),
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v, err := NewVerifier(context.Background(), Config{PublicKeyPEM: tc.pem})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := v.Verify(context.Background(), tc.good); err != nil {
				t.Fatalf("good token rejected: %v", err)
			}
			for i, tok := range tc.others {
				if _, err := v.Verify(context.Background(), tok); !errors.Is(err, ErrInvalid) {
					t.Fatalf("foreign token %d: got %v, want ErrInvalid", i, err)
				}
			}
		})
	}
	t.Run("HMAC verifier refuses RS256", func(t *testing.T) {
		v, _ := NewVerifier(context.Background(), Config{Secret: secret})
		if _, err := v.Verify(context.Background(), sign(t, jwt.SigningMethodRS256, rsaKey, valid())); !errors.Is(err, ErrInvalid) {
			t.Fatalf("got %v", err)
		}
	})
}

func TestNewVerifierConfig(t *testing.T) {
	if _, err := NewVerifier(context.Background(), Config{}); err == nil {
		t.Fatal("empty config accepted")
	}
	if _, err := NewVerifier(context.Background(), Config{Secret: secret, PublicKeyPEM: []byte("x")}); err == nil {
		t.Fatal("secret and key both accepted")
	}
	if _, err := NewVerifier(context.Background(), Config{PublicKeyPEM: []byte("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")}); err == nil {
		t.Fatal("bad PEM accepted")
	}
}

func TestAllows(t *testing.T) {
	cases := []struct {
		rooms []string
		room  string
		want  bool
	}{
		{nil, "anything", true},
		{[]string{}, "anything", false},
		{[]string{"doc-1"}, "doc-1", true},
		{[]string{"doc-1"}, "doc-10", false},
		{[]string{"doc-*"}, "doc-10", true},
		{[]string{"doc-*"}, "doc-", true},
		{[]string{"doc-*"}, "do", false},
		{[]string{"*"}, "x", true},
		{[]string{"a", "b:*"}, "b:c", true},
	}
	for _, tc := range cases {
		c := &Claims{Rooms: tc.rooms}
		if got := c.Allows(tc.room); got != tc.want {
			t.Errorf("rooms %v allows %q = %v, want %v", tc.rooms, tc.room, got, tc.want)
		}
	}
}

func TestMintRoundTrip(t *testing.T) {
	tok, err := MintHS256(secret, MintOptions{Subject: "bob", Name: "Bob", Rooms: []string{"doc-*"}, Meta: json.RawMessage(`{"c":1}`), TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	v, _ := NewVerifier(context.Background(), Config{Secret: secret})
	c, err := v.Verify(context.Background(), tok)
	if err != nil {
		t.Fatal(err)
	}
	if c.Subject != "bob" || c.Name != "Bob" || !c.Allows("doc-9") || c.Allows("x") || string(c.Meta) != `{"c":1}` {
		t.Fatalf("claims: %+v", c)
	}
	if d := time.Until(c.ExpiresAt); d <= 0 || d > time.Minute {
		t.Fatalf("exp in %v", d)
	}
}
