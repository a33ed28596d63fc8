// Package auth verifies the JWTs that let a user into rooms and decides
// which rooms a verified token allows. It accepts only the configured
// algorithm family (HMAC for a shared secret, the key's own family for a
// public key), so neither "none" nor an HS/RS confusion gets through.
package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// MaxMetaBytes bounds the meta claim.
const MaxMetaBytes = 1024

// Leeway is the clock skew tolerated on exp, nbf and iat.
const Leeway = time.Second

// Role is what a connection may do in its room, decided once at the
// handshake.
type Role string

// Roles.
const (
	// RoleWrite may change what a room keeps: stored messages, state,
	// documents.
	RoleWrite Role = "write"
	// RoleRead receives everything and may set its presence and send
	// ephemeral messages, but changes nothing that is kept.
	RoleRead Role = "read"
)

// Claims are the verified facts of a token.
type Claims struct {
	Subject string
	Name    string
	// Meta is the member's initial meta: a JSON object, {} when absent.
	Meta json.RawMessage
	// Rooms lists the rooms the holder may write: names and prefixes
	// ending in '*'. nil (no rooms claim) means every room, unless Read is
	// set; an empty list none.
	Rooms []string
	// Read lists the rooms the holder may join read-only, in the same
	// form; nil when the token has no read claim.
	Read      []string
	ExpiresAt time.Time
}

// Role returns the holder's role in room, and false when the token does
// not let them in. A room both claims list is written; a token with a read
// claim and no rooms claim writes no room.
func (c *Claims) Role(room string) (Role, bool) {
	switch {
	case c.Rooms == nil && c.Read == nil:
		return RoleWrite, true
	case matches(c.Rooms, room):
		return RoleWrite, true
	case matches(c.Read, room):
		return RoleRead, true
	}
	return "", false
}

// Allows reports whether the claims let their holder into room, in either
// role.
func (c *Claims) Allows(room string) bool {
	_, ok := c.Role(room)
	return ok
}

// matches reports whether room is one of patterns: a name, or a prefix
// ending in '*'.
func matches(patterns []string, room string) bool {
	for _, p := range patterns {
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

// tokenClaims is a token's payload: the registered claims the parser
// checks, and every claim raw, from which the mapped ones are read.
type tokenClaims struct {
	jwt.RegisteredClaims
	raw map[string]json.RawMessage
}

// UnmarshalJSON decodes the payload both ways.
func (t *tokenClaims) UnmarshalJSON(b []byte) error {
	if err := json.Unmarshal(b, &t.RegisteredClaims); err != nil {
		return err
	}
	return json.Unmarshal(b, &t.raw)
}

// Errors of Verify; each is wrapped with the detail.
var (
	ErrMissing = errors.New("token missing")
	ErrInvalid = errors.New("token invalid")
	ErrExpired = errors.New("token expired")
)

// Config says which tokens to accept: a Secret, a PublicKeyPEM or JWKS
// URLs; a Secret may go with JWKS URLs (HS* tokens are then checked with
// the secret, the others against the key sets).
type Config struct {
	// Secret is the HMAC key (HS256, HS384, HS512).
	Secret []byte
	// PublicKeyPEM is an RSA (RS*, PS*), ECDSA (ES*) or Ed25519 (EdDSA)
	// public key.
	PublicKeyPEM []byte
	// JWKSURLs are identity providers' JSON Web Key Sets (http or https
	// URLs); see JWKSOptions for how they are fetched.
	JWKSURLs []string
	JWKS     JWKSOptions
	// Claims maps the claims roomcast reads to the token's claim names;
	// the zero value reads sub, name, meta, rooms and read.
	Claims ClaimMap
	// Issuer and Audience, when set, must match iss and aud.
	Issuer   string
	Audience string
}

// Algorithm families.
var (
	hmacMethods    = []string{"HS256", "HS384", "HS512"}
	rsaMethods     = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}
	ecdsaMethods   = []string{"ES256", "ES384", "ES512"}
	ed25519Methods = []string{"EdDSA"}
)

// Verifier checks tokens against a Config.
type Verifier struct {
	secret []byte // HS* tokens, when set
	static any    // the PEM public key, when set
	jwks   *keySets
	claims ClaimMap
	parser *jwt.Parser
}

// NewVerifier validates cfg and returns its verifier. With JWKS URLs it
// fetches the key sets before it returns (an unreachable one is logged and
// fetched again later) and keeps them fresh until ctx ends.
func NewVerifier(ctx context.Context, cfg Config) (*Verifier, error) {
	v := &Verifier{claims: cfg.Claims.withDefaults()}
	var methods []string
	if len(cfg.Secret) > 0 && len(cfg.PublicKeyPEM) > 0 {
		return nil, errors.New("auth: set either a secret or a public key, not both")
	}
	if len(cfg.PublicKeyPEM) > 0 && len(cfg.JWKSURLs) > 0 {
		return nil, errors.New("auth: set either a public key or JWKS URLs, not both")
	}
	if len(cfg.Secret) > 0 {
		v.secret = cfg.Secret
		methods = append(methods, hmacMethods...)
	}
	if len(cfg.PublicKeyPEM) > 0 {
		pub, err := parsePublicKey(cfg.PublicKeyPEM)
		if err != nil {
			return nil, err
		}
		v.static = pub
		methods = append(methods, familyOf(pub)...)
	}
	if len(cfg.JWKSURLs) > 0 {
		ks, err := newKeySets(ctx, cfg.JWKSURLs, cfg.JWKS)
		if err != nil {
			return nil, err
		}
		v.jwks = ks
		methods = append(methods, rsaMethods...)
		methods = append(methods, ecdsaMethods...)
		methods = append(methods, ed25519Methods...)
	}
	if len(methods) == 0 {
		return nil, errors.New("auth: no secret, public key or JWKS URL configured")
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
	v.parser = jwt.NewParser(opts...)
	return v, nil
}

// familyOf lists the algorithms a public key verifies.
func familyOf(pub any) []string {
	switch pub.(type) {
	case *rsa.PublicKey:
		return rsaMethods
	case *ecdsa.PublicKey:
		return ecdsaMethods
	case ed25519.PublicKey:
		return ed25519Methods
	}
	return nil
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

// key picks the key that must have signed t: the secret for HS*, else
// the configured public key or the key set's key of t's kid. The parser
// already refused an algorithm no configured key verifies.
func (v *Verifier) key(ctx context.Context) jwt.Keyfunc {
	return func(t *jwt.Token) (any, error) {
		alg := t.Method.Alg()
		switch {
		case slices.Contains(hmacMethods, alg):
			if v.secret == nil {
				return nil, errAlgorithm
			}
			return v.secret, nil
		case v.static != nil:
			return v.static, nil
		case v.jwks != nil:
			return v.jwks.key(ctx, t)
		}
		return nil, errAlgorithm
	}
}

var errAlgorithm = errors.New("algorithm not accepted")

// Verify checks token and returns its claims. Errors wrap ErrMissing,
// ErrExpired or ErrInvalid. ctx bounds a fetch of a key set, when the
// token names a key not yet known.
func (v *Verifier) Verify(ctx context.Context, token string) (*Claims, error) {
	if token == "" {
		return nil, ErrMissing
	}
	var tc tokenClaims
	_, err := v.parser.ParseWithClaims(token, &tc, v.key(ctx))
	switch {
	case errors.Is(err, jwt.ErrTokenExpired):
		return nil, ErrExpired
	case err != nil:
		return nil, fmt.Errorf("%w: %s", ErrInvalid, reason(err))
	}
	c, err := v.claims.read(tc.raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %s", ErrInvalid, err.Error())
	}
	c.ExpiresAt = tc.ExpiresAt.Time
	return c, nil
}

// reason turns a jwt error into a short message safe to show a client.
func reason(err error) string {
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		return "malformed"
	case errors.Is(err, errUnknownKey):
		return "signed by a key the identity provider does not list"
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
	Rooms    []string // nil: every room (unless Read is set)
	Read     []string // nil: no read claim
	TTL      time.Duration
	Issuer   string
	Audience string
}

// mintClaims is the JSON shape of a token roomcast mints.
type mintClaims struct {
	jwt.RegisteredClaims
	Name  string          `json:"name,omitempty"`
	Meta  json.RawMessage `json:"meta,omitempty"`
	Rooms *[]string       `json:"rooms,omitempty"`
	Read  *[]string       `json:"read,omitempty"`
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
	tc := mintClaims{
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
	if o.Read != nil {
		read := append([]string{}, o.Read...)
		tc.Read = &read
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, &tc).SignedString(secret)
	if err != nil {
		return "", fmt.Errorf("auth: sign token: %w", err)
	}
	return s, nil
}
