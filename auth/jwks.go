package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/time/rate"
)

// JWKSOptions say how key sets are fetched. Zero values are the defaults
// given with each field.
type JWKSOptions struct {
	// Refresh is how often every key set is fetched again. Zero value
	// means one hour.
	Refresh time.Duration
	// UnknownKeyRefresh is the least time between two fetches caused by
	// a token whose kid no key set holds (a key rotated in); a token
	// arriving sooner is refused without a fetch. Zero value means 10 s.
	UnknownKeyRefresh time.Duration
	// Timeout bounds one fetch. Zero value means 5 s.
	Timeout time.Duration
	// Client fetches; nil means a client of its own.
	Client *http.Client
	// Logger gets fetch failures; nil means slog.Default().
	Logger *slog.Logger
}

func (o JWKSOptions) withDefaults() JWKSOptions {
	if o.Refresh <= 0 {
		o.Refresh = time.Hour
	}
	if o.UnknownKeyRefresh <= 0 {
		o.UnknownKeyRefresh = 10 * time.Second
	}
	if o.Timeout <= 0 {
		o.Timeout = 5 * time.Second
	}
	if o.Client == nil {
		o.Client = &http.Client{}
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// ValidateJWKSURL checks the form of a key set URL: absolute http or
// https with a host.
func ValidateJWKSURL(u string) error {
	p, err := url.Parse(u)
	if err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" || p.User != nil {
		return fmt.Errorf("%q is not an http(s)://host/path URL", u)
	}
	return nil
}

// errUnknownKey is a token whose kid no key set holds, after the refetch
// the rate allowed.
var errUnknownKey = errors.New("unknown key id")

// keySets are the identity providers' key sets, cached in memory: fetched
// at start (a failure is logged, not fatal), every Refresh by jwkset's own
// goroutine (which ends with the verifier's context), and on a token with
// an unknown kid at most once per UnknownKeyRefresh across all sets.
//
// Two views share the sets: cached reads only, and reads that fetch the
// sets again when the kid is unknown. The gate between them never waits:
// a token with an unknown kid that comes before the next fetch is allowed
// is refused at once (keyfunc's own limiter would hold the handshake until
// it is), so a burst of them costs one fetch and no hanging sockets.
type keySets struct {
	cached   keyfunc.Keyfunc
	fetching keyfunc.Keyfunc
	gate     *rate.Limiter
	timeout  time.Duration
}

func newKeySets(ctx context.Context, urls []string, o JWKSOptions) (*keySets, error) {
	o = o.withDefaults()
	sets := make(map[string]jwkset.Storage, len(urls))
	for _, u := range urls {
		if err := ValidateJWKSURL(u); err != nil {
			return nil, fmt.Errorf("auth: JWKS URL %w", err)
		}
		logFailure := func(_ context.Context, err error) {
			o.Logger.Error("fetch JWKS; tokens signed by keys it does not list yet are refused", "url", u, "err", err)
		}
		st, err := jwkset.NewStorageFromHTTP(u, jwkset.HTTPClientStorageOptions{
			Client:                    o.Client,
			Ctx:                       ctx,
			HTTPTimeout:               o.Timeout,
			NoErrorReturnFirstHTTPReq: true,
			RefreshErrorHandler:       logFailure,
			RefreshInterval:           o.Refresh,
		})
		if err != nil {
			return nil, fmt.Errorf("auth: JWKS %s: %w", u, err)
		}
		sets[u] = st
	}
	view := func(refresh *rate.Limiter) (keyfunc.Keyfunc, error) {
		c, err := jwkset.NewHTTPClient(jwkset.HTTPClientOptions{HTTPURLs: maps.Clone(sets), RefreshUnknownKID: refresh})
		if err != nil {
			return nil, fmt.Errorf("auth: JWKS: %w", err)
		}
		return keyfunc.New(keyfunc.Options{Ctx: ctx, Storage: c})
	}
	cached, err := view(nil)
	if err != nil {
		return nil, err
	}
	// The gate limits these fetches; this limiter lets each through.
	fetching, err := view(rate.NewLimiter(rate.Inf, 1))
	if err != nil {
		return nil, err
	}
	return &keySets{cached: cached, fetching: fetching, gate: rate.NewLimiter(rate.Every(o.UnknownKeyRefresh), 1), timeout: o.Timeout}, nil
}

// lookup returns the key (or key set, for a token without kid) keyfunc
// finds for t: from the cache, else, when the gate allows, after fetching
// the sets again.
func (k *keySets) lookup(ctx context.Context, t *jwt.Token) (any, error) {
	key, err := k.cached.KeyfuncCtx(ctx)(t)
	if !errors.Is(err, jwkset.ErrKeyNotFound) {
		return key, err
	}
	if !k.gate.Allow() {
		return nil, errUnknownKey
	}
	ctx, cancel := context.WithTimeout(ctx, k.timeout)
	defer cancel()
	key, err = k.fetching.KeyfuncCtx(ctx)(t)
	if errors.Is(err, jwkset.ErrKeyNotFound) {
		return nil, errUnknownKey
	}
	return key, err
}

// key returns the public key that must have signed t, checked to be of
// t's algorithm family: an RSA key verifies RS* and PS* only, an EC key
// the ES* of its curve, an Ed25519 key EdDSA; a key set's symmetric key
// nothing. A token without kid may be signed by any fitting key.
func (k *keySets) key(ctx context.Context, t *jwt.Token) (any, error) {
	alg := t.Method.Alg()
	key, err := k.lookup(ctx, t)
	if err != nil {
		return nil, err
	}
	switch key := key.(type) {
	case jwt.VerificationKeySet:
		fit := jwt.VerificationKeySet{}
		for _, kk := range key.Keys {
			if fits(kk, alg) {
				fit.Keys = append(fit.Keys, kk)
			}
		}
		if len(fit.Keys) == 0 {
			return nil, errUnknownKey
		}
		return fit, nil
	default:
		if !fits(key, alg) {
			return nil, fmt.Errorf("%w: %s with this key", errAlgorithm, alg)
		}
		return key, nil
	}
}

// fits reports whether key verifies alg.
func fits(key any, alg string) bool {
	switch key := key.(type) {
	case *rsa.PublicKey:
		return slices.Contains(rsaMethods, alg)
	case *ecdsa.PublicKey:
		switch alg {
		case "ES256":
			return key.Curve == elliptic.P256()
		case "ES384":
			return key.Curve == elliptic.P384()
		case "ES512":
			return key.Curve == elliptic.P521()
		}
	case ed25519.PublicKey:
		return alg == "EdDSA"
	}
	return false
}
