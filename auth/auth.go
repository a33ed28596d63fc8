// Package auth verifies the JWTs that let a user into rooms and decides
// which rooms a verified token allows. It accepts only the configured
// algorithm family (HMAC for a shared secret, the key's own family for a
// public key), so neither "none" nor an HS/RS confusion gets through.
package auth

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// MaxMetaBytes bounds the meta claim.
const MaxMetaBytes = 1024

// Leeway is the clock skew tolerated on exp, nbf and iat.
const Leeway = time.Second

// Claims are the verified facts of a token.
type Claims struct {
	Subject string
	Name    string
	// Meta is the member's initial meta: a JSON object, {} when absent.
	Meta json.RawMessage
	// Rooms lists room names and prefixes ending in '*'; nil allows every
	// room, an empty list none.
	Rooms     []string
	ExpiresAt time.Time
}

// Allows reports whether the claims let their holder into room.
func (c *Claims) Allows(room string) bool {
	if c.Rooms == nil {
		return true
	}
	for _, p := range c.Rooms {
		if prefix, ok := strings.CutSuffix(p, "*"); ok {
			if strings.HasPrefix(room, prefix) {
				return true
			}
		} else if p == room {
			return true
		}
	}
	return false
}

// tokenClaims is the JSON shape of a roomcast token.
type tokenClaims struct {
	jwt.RegisteredClaims
	Name  string          `json:"name,omitempty"`
	Meta  json.RawMessage `json:"meta,omitempty"`
	Rooms *[]string       `json:"rooms,omitempty"`
}

// Errors of Verify; each is wrapped with the detail.
var (
	ErrMissing = errors.New("token missing")
	ErrInvalid = errors.New("token invalid")
	ErrExpired = errors.New("token expired")
)

// Config says which tokens to accept. Exactly one of Secret and PublicKeyPEM
// is set.
type Config struct {
	// Secret is the HMAC key (HS256, HS384, HS512).
	Secret []byte
	// PublicKeyPEM is an RSA (RS*, PS*), ECDSA (ES*) or Ed25519 (EdDSA)
	// public key.
	PublicKeyPEM []byte
	// Issuer and Audience, when set, must match iss and aud.
	Issuer   string
	Audience string
}

// Verifier checks tokens against a Config.
type Verifier struct {
	key    any
	parser *jwt.Parser
}

// NewVerifier validates cfg and returns its verifier.
func NewVerifier(cfg Config) (*Verifier, error) {
	var key any
	var methods []string
	switch {
	case len(cfg.Secret) > 0 && len(cfg.PublicKeyPEM) > 0:
		return nil, errors.New("auth: set either a secret or a public key, not both")
	case len(cfg.Secret) > 0:
		key, methods = cfg.Secret, []string{"HS256", "HS384", "HS512"}
	case len(cfg.PublicKeyPEM) > 0:
		pub, err := parsePublicKey(cfg.PublicKeyPEM)
		if err != nil {
			return nil, err
		}
		key = pub
		switch pub.(type) {
		case *rsa.PublicKey:
			methods = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}
		case *ecdsa.PublicKey:
			methods = []string{"ES256", "ES384", "ES512"}
		case ed25519.PublicKey:
			methods = []string{"EdDSA"}
		}
	default:
		return nil, errors.New("auth: no secret or public key configured")
	}
	opts := []jwt.ParserOption{
		jwt.WithValidMethods(methods),
		jwt.WithExpirationRequired(),
		// A token issued in the future is refused (beyond the leeway):
		// a clock far ahead would otherwise mint tokens that outlive
		// their intended life.
		jwt.WithIssuedAt(),
		jwt.WithLeeway(Leeway),
	}
	if cfg.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(cfg.Issuer))
	}
	if cfg.Audience != "" {
		opts = append(opts, jwt.WithAudience(cfg.Audience))
	}
	return &Verifier{key: key, parser: jwt.NewParser(opts...)}, nil
}

func parsePublicKey(pemBytes []byte) (any, error) {
	if k, err := jwt.ParseRSAPublicKeyFromPEM(pemBytes); err == nil {
		return k, nil
	}
	if k, err := jwt.ParseECPublicKeyFromPEM(pemBytes); err == nil {
		return k, nil
	}
	if k, err := jwt.ParseEdPublicKeyFromPEM(pemBytes); err == nil {
		return k, nil
	}
	return nil, errors.New("auth: public key is not an RSA, ECDSA or Ed25519 PEM key")
}

// Verify checks token and returns its claims. Errors wrap ErrMissing,
// ErrExpired or ErrInvalid.
func (v *Verifier) Verify(token string) (*Claims, error) {
	if token == "" {
		return nil, ErrMissing
	}
	var tc tokenClaims
	_, err := v.parser.ParseWithClaims(token, &tc, func(*jwt.Token) (any, error) { return v.key, nil })
	switch {
	case errors.Is(err, jwt.ErrTokenExpired):
		return nil, ErrExpired
	case err != nil:
		return nil, fmt.Errorf("%w: %s", ErrInvalid, reason(err))
	}
	if tc.Subject == "" {
		return nil, fmt.Errorf("%w: sub claim required", ErrInvalid)
	}
	c := &Claims{Subject: tc.Subject, Name: tc.Name, ExpiresAt: tc.ExpiresAt.Time, Meta: json.RawMessage("{}")}
	if c.Name == "" {
		c.Name = c.Subject
	}
	if tc.Rooms != nil {
		c.Rooms = append([]string{}, *tc.Rooms...)
	}
	if len(tc.Meta) > 0 && string(tc.Meta) != "null" {
		if len(tc.Meta) > MaxMetaBytes {
			return nil, fmt.Errorf("%w: meta claim over 1 KiB", ErrInvalid)
		}
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(tc.Meta, &obj); err != nil || obj == nil {
			return nil, fmt.Errorf("%w: meta claim must be an object", ErrInvalid)
		}
		c.Meta = append(json.RawMessage(nil), tc.Meta...)
	}
	return c, nil
}

// reason turns a jwt error into a short message safe to show a client.
func reason(err error) string {
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		return "malformed"
	case errors.Is(err, jwt.ErrTokenSignatureInvalid), errors.Is(err, jwt.ErrTokenUnverifiable):
		return "bad signature or algorithm not accepted"
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return "exp claim required"
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return "wrong issuer"
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return "wrong audience"
	case errors.Is(err, jwt.ErrTokenNotValidYet), errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return "not valid yet"
	default:
		return "rejected"
	}
}

// MintOptions describe a token to mint.
type MintOptions struct {
	Subject  string
	Name     string
	Meta     json.RawMessage
	Rooms    []string // nil: every room
	TTL      time.Duration
	Issuer   string
	Audience string
}

// MintHS256 signs an HS256 token with secret, for development and tools.
func MintHS256(secret []byte, o MintOptions) (string, error) {
	if o.Subject == "" {
		return "", errors.New("auth: mint: subject required")
	}
	if o.TTL <= 0 {
		o.TTL = time.Hour
	}
	now := time.Now()
	tc := tokenClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			Subject:   o.Subject,
			Issuer:    o.Issuer,
			IssuedAt:  jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(now.Add(o.TTL)),
		},
		Name: o.Name,
		Meta: o.Meta,
	}
	if o.Audience != "" {
		tc.Audience = jwt.ClaimStrings{o.Audience}
	}
	if o.Rooms != nil {
		rooms := append([]string{}, o.Rooms...)
		tc.Rooms = &rooms
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, &tc).SignedString(secret)
	if err != nil {
		return "", fmt.Errorf("auth: sign token: %w", err)
	}
	return s, nil
}
