package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/roomcast/roomcast/auth"
	"github.com/roomcast/roomcast/rooms"
)

// Config is the service configuration, from flags and ROOMCAST_* env vars
// (a flag wins over its env var). Defaults live in defaultConfig only.
type Config struct {
	Addr             string
	RedisURL         string
	JWTSecret        string
	JWTPublicKeyFile string
	JWTIssuer        string
	JWTAudience      string
	APIKey           string
	PresenceTTL      time.Duration
	Heartbeat        time.Duration
	LeaveGrace       time.Duration
	MaxMessageBytes  int
	SendQueue        int
	SendQueueBytes   int
	Rate             int
	AllowedOrigins   []string // nil: every origin
	InstanceID       string
	Dev              bool
	PingInterval     time.Duration
	ShutdownTimeout  time.Duration
	HistorySize      int
	HistoryTTL       time.Duration
	MaxStateBytes    int
	DocTTL           time.Duration
	// MaxConns bounds the sockets of the instance. Zero value means the
	// descriptor limit less a tenth (at least 64) for everything else.
	MaxConns int
	// MaxConnsPerIP bounds the sockets from one client address. Zero
	// value means no bound (behind a load balancer every socket comes
	// from its address).
	MaxConnsPerIP int
	// ReadTimeout bounds the reading of an HTTP request, headers and
	// body, before an upgrade or an API answer; it starts at the
	// connection's first byte wait, so a silent socket is closed too.
	ReadTimeout time.Duration
	// Store is where rooms are kept for good: "sqlite:PATH",
	// "postgres://…" or "memory". Zero value means
	// sqlite:roomcast-data/roomcast.db without Redis, memory with it.
	Store            string
	MaxDocBytes      int // a Yjs document's stored size, and one Yjs message
	MaxInflightBytes int // large frames being read at once, on this instance
	// StoreDelay is how long after a room's first unsaved change it is
	// written to the store behind Redis (postgres store with REDIS_URL).
	// Zero value means 2s.
	StoreDelay time.Duration
	// VersionInterval is the least time between two versions of a room
	// being changed (with a store). Zero value means 10 minutes.
	VersionInterval time.Duration
	// Versions is how many versions a room keeps, the newest. Zero value
	// means 100.
	Versions int

	// JWTJWKSURLs are identity providers' key set URLs; nil means none.
	JWTJWKSURLs []string
	// JWTClaims maps the claims roomcast reads to the token's claim
	// names; the zero value reads sub, name, meta, rooms and read.
	JWTClaims auth.ClaimMap
	// jwtClaims is JWT_CLAIMS as given, for the usage line.
	jwtClaims string
	// Webhooks (see webhooks.go): the URLs every event goes to (none: off)
	// and the secret that signs them.
	WebhookURLs        []string
	WebhookSecret      string
	WebhookVacateDelay time.Duration
	WebhookMaxPending  int
	WebhookRetryMin    time.Duration // the first retry's wait
	WebhookRetryMax    time.Duration // the longest wait between retries
}

// Bounds of SEND_QUEUE_BYTES: below 64 KiB a burst of ordinary frames
// would cut a socket; above 1 GiB the bound no longer protects the process.
const (
	minSendQueueBytes = 64 << 10
	maxSendQueueBytes = 1 << 30
)

func defaultConfig() Config {
	return Config{
		Addr:             "", // :8080, or 127.0.0.1:8080 with -dev (see loadConfig)
		PresenceTTL:      30 * time.Second,
		Heartbeat:        10 * time.Second,
		MaxMessageBytes:  65536,
		SendQueue:        256,
		SendQueueBytes:   rooms.DefaultQueueBytes,
		Rate:             50,
		PingInterval:     25 * time.Second,
		ShutdownTimeout:  8 * time.Second,
		HistorySize:      1000,
		HistoryTTL:       24 * time.Hour,
		MaxStateBytes:    1 << 20,
		DocTTL:           720 * time.Hour,
		ReadTimeout:      10 * time.Second,
		MaxDocBytes:      64 << 20,
		MaxInflightBytes: 256 << 20,
		VersionInterval:  10 * time.Minute,
		Versions:         100,
		StoreDelay:       2 * time.Second,

		WebhookVacateDelay: 5 * time.Second,
		WebhookMaxPending:  100000,
		WebhookRetryMin:    time.Second,
		WebhookRetryMax:    10 * time.Minute,
	}
}

// setting is one configuration knob: its flag name, env var and parser.
type setting struct {
	name   string // flag name; env var is ROOMCAST_ + upper snake case
	usage  string
	secret bool
	get    func(c *Config) string
	set    func(c *Config, v string) error
}

func (s setting) env() string {
	return "ROOMCAST_" + strings.ToUpper(strings.ReplaceAll(s.name, "-", "_"))
}

func durationSetting(name, usage string, field func(*Config) *time.Duration) setting {
	return setting{name: name, usage: usage,
		get: func(c *Config) string { return field(c).String() },
		set: func(c *Config, v string) error {
			d, err := time.ParseDuration(v)
			if err != nil {
				return errors.New("not a duration (e.g. 10s, 250ms)")
			}
			if d < 0 {
				return errors.New("must not be negative")
			}
			*field(c) = d
			return nil
		}}
}

func intSetting(name, usage string, min int, field func(*Config) *int) setting {
	return setting{name: name, usage: usage,
		get: func(c *Config) string { return strconv.Itoa(*field(c)) },
		set: func(c *Config, v string) error {
			n, err := strconv.Atoi(v)
			if err != nil {
				return errors.New("not an integer")
			}
			if n < min {
				return fmt.Errorf("must be at least %d", min)
			}
			*field(c) = n
			return nil
		}}
}

func stringSetting(name, usage string, secret bool, field func(*Config) *string) setting {
	return setting{name: name, usage: usage, secret: secret,
		get: func(c *Config) string { return *field(c) },
		set: func(c *Config, v string) error { *field(c) = v; return nil }}
}

var settings = []setting{
	stringSetting("addr", "listen address (default :8080, or 127.0.0.1:8080 with -dev)", false, func(c *Config) *string { return &c.Addr }),
	stringSetting("redis-url", "Redis URL (redis://host:6379/0, or redis-cluster://host:port,host:port for a Redis Cluster); empty runs one instance in memory", true, func(c *Config) *string { return &c.RedisURL }),
	stringSetting("jwt-secret", "HS256 secret for user tokens (at least 32 bytes)", true, func(c *Config) *string { return &c.JWTSecret }),
	stringSetting("jwt-public-key-file", "PEM public key file for RS256/ES256/EdDSA user tokens", false, func(c *Config) *string { return &c.JWTPublicKeyFile }),
	{name: "jwt-jwks-url", usage: "identity providers' JSON Web Key Set URLs, comma-separated (RS*/PS*/ES*/EdDSA tokens, the kid picks the key)",
		get: func(c *Config) string { return strings.Join(c.JWTJWKSURLs, ",") },
		set: func(c *Config, v string) error {
			c.JWTJWKSURLs = nil
			for _, u := range strings.Split(v, ",") {
				if u = strings.TrimSpace(u); u == "" {
					continue
				}
				if err := auth.ValidateJWKSURL(u); err != nil {
					return err
				}
				c.JWTJWKSURLs = append(c.JWTJWKSURLs, u)
			}
			return nil
		}},
	{name: "jwt-claims", usage: "claims read from other claim names: key:claim,… with key sub, name, meta, rooms or read (name:nickname,rooms:https://app/rooms)",
		get: func(c *Config) string { return c.jwtClaims },
		set: func(c *Config, v string) error {
			m, err := auth.ParseClaimMap(v)
			if err != nil {
				return err
			}
			c.JWTClaims, c.jwtClaims = m, v
			return nil
		}},
	stringSetting("jwt-issuer", "required iss claim", false, func(c *Config) *string { return &c.JWTIssuer }),
	stringSetting("jwt-audience", "required aud claim", false, func(c *Config) *string { return &c.JWTAudience }),
	stringSetting("api-key", "bearer key of the server-side HTTP API", true, func(c *Config) *string { return &c.APIKey }),
	durationSetting("presence-ttl", "how long a connection stays present without a heartbeat", func(c *Config) *time.Duration { return &c.PresenceTTL }),
	durationSetting("heartbeat", "presence heartbeat interval", func(c *Config) *time.Duration { return &c.Heartbeat }),
	durationSetting("leave-grace", "delay before a user whose last connection closed leaves", func(c *Config) *time.Duration { return &c.LeaveGrace }),
	durationSetting("ping-interval", "ping a connection silent for this long; abort it after 2.5 times as long", func(c *Config) *time.Duration { return &c.PingInterval }),
	intSetting("max-message-bytes", "largest frame a client may send", 512, func(c *Config) *int { return &c.MaxMessageBytes }),
	intSetting("send-queue", "frames queued per connection before it is closed as too slow", 1, func(c *Config) *int { return &c.SendQueue }),
	intSetting("send-queue-bytes", "bytes queued per connection before it is closed as too slow (one larger frame still goes alone)", minSendQueueBytes, func(c *Config) *int { return &c.SendQueueBytes }),
	intSetting("rate", "messages per second per connection (burst twice that)", 1, func(c *Config) *int { return &c.Rate }),
	intSetting("history-size", "stored messages a room keeps for resume; 0 turns storing off", 0, func(c *Config) *int { return &c.HistorySize }),
	stringSetting("store", "where rooms and documents are kept: sqlite:PATH (default without Redis: sqlite:"+defaultSQLitePath+"), postgres://…, or memory (nothing outlives the process)", true, func(c *Config) *string { return &c.Store }),
	durationSetting("store-delay", "with Redis and a postgres store: how long after a room's first unsaved change it is written to the store", func(c *Config) *time.Duration { return &c.StoreDelay }),
	durationSetting("doc-ttl", "how long a room's Yjs document lives after its last change", func(c *Config) *time.Duration { return &c.DocTTL }),
	durationSetting("history-ttl", "how long a room's history and state live after its last stored message", func(c *Config) *time.Duration { return &c.HistoryTTL }),
	intSetting("max-conns", "sockets this instance holds at most (0: the descriptor limit less a tenth)", 0, func(c *Config) *int { return &c.MaxConns }),
	intSetting("max-conns-per-ip", "sockets one client address may hold (0: no bound; keep 0 behind a load balancer)", 0, func(c *Config) *int { return &c.MaxConnsPerIP }),
	durationSetting("read-timeout", "time to read an HTTP request's headers and body, from the first wait", func(c *Config) *time.Duration { return &c.ReadTimeout }),
	intSetting("max-state-bytes", "largest state frame a client may send", 1024, func(c *Config) *int { return &c.MaxStateBytes }),
	intSetting("max-doc-bytes", "largest stored size of a room's Yjs document, and of one Yjs message", minDocBytes, func(c *Config) *int { return &c.MaxDocBytes }),
	intSetting("max-inflight-bytes", "bytes of large frames this instance reads at once; a frame that would pass it is refused", minDocBytes, func(c *Config) *int { return &c.MaxInflightBytes }),
	durationSetting("version-interval", "least time between two versions of a room being changed (with a store)", func(c *Config) *time.Duration { return &c.VersionInterval }),
	intSetting("versions", "versions a room keeps, the newest (with a store)", 1, func(c *Config) *int { return &c.Versions }),
	{name: "webhook-url", usage: "comma-separated http(s) URLs that receive every webhook event (empty: webhooks off)",
		get: func(c *Config) string { return strings.Join(c.WebhookURLs, ",") },
		set: func(c *Config, v string) error {
			urls, err := parseWebhookURLs(v)
			c.WebhookURLs = urls
			return err
		}},
	stringSetting("webhook-secret", "signing secret of webhook requests, whsec_ + base64 (Standard Webhooks)", true, func(c *Config) *string { return &c.WebhookSecret }),
	durationSetting("webhook-vacate-delay", "how long an emptied room waits for a member to come back before room.vacated", func(c *Config) *time.Duration { return &c.WebhookVacateDelay }),
	intSetting("webhook-max-pending", "webhook events waiting at most, cluster-wide; past it the oldest is dropped", 1, func(c *Config) *int { return &c.WebhookMaxPending }),
	durationSetting("webhook-retry-min", "wait before a failed webhook's first retry (then doubling)", func(c *Config) *time.Duration { return &c.WebhookRetryMin }),
	durationSetting("webhook-retry-max", "longest wait between two retries of a webhook", func(c *Config) *time.Duration { return &c.WebhookRetryMax }),
	{name: "allowed-origins", usage: "comma-separated scheme://host[:port] allowed as Origin, or *",
		get: func(c *Config) string { return strings.Join(c.AllowedOrigins, ",") },
		set: func(c *Config, v string) error {
			origins, err := parseOrigins(v)
			c.AllowedOrigins = origins
			return err
		}},
	stringSetting("instance-id", "name of this instance (random when empty)", false, func(c *Config) *string { return &c.InstanceID }),
	{name: "dev", usage: "development mode: random secret and API key, /dev/token, readable logs",
		get: func(c *Config) string { return strconv.FormatBool(c.Dev) },
		set: func(c *Config, v string) error {
			b, err := strconv.ParseBool(v)
			if err != nil {
				return errors.New("not a boolean")
			}
			c.Dev = b
			return nil
		}},
}

// parseOrigins parses ALLOWED_ORIGINS; empty or "*" allows every origin.
func parseOrigins(v string) ([]string, error) {
	var out []string
	for _, o := range strings.Split(v, ",") {
		o = strings.TrimSpace(o)
		if o == "" {
			continue
		}
		if o == "*" {
			return nil, nil
		}
		u, err := url.Parse(o)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
			return nil, fmt.Errorf("%q is not scheme://host[:port]", o)
		}
		out = append(out, strings.ToLower(u.Scheme+"://"+u.Host))
	}
	return out, nil
}

// loadConfig reads env vars, then args. Errors are one line naming the
// setting; secrets never appear in them.
func loadConfig(args []string, getenv func(string) string) (Config, error) {
	cfg := defaultConfig()
	fs := flag.NewFlagSet("roomcast", flag.ContinueOnError)
	// Parse errors come back as one line; -h prints the usage to stdout.
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	vals := make(map[string]*string, len(settings))
	var dev *bool
	for _, s := range settings {
		if s.name == "dev" {
			// A boolean flag, so that plain -dev works.
			dev = fs.Bool(s.name, false, s.usage+" (env "+s.env()+")")
			continue
		}
		vals[s.name] = fs.String(s.name, "", fmt.Sprintf("%s (env %s, default %q)", s.usage, s.env(), s.get(&cfg)))
	}
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			fs.SetOutput(os.Stdout)
			fmt.Println("usage: roomcast [flags]   |   roomcast token -sub USER [-name NAME] [-room ROOMS] [-read ROOMS] [-ttl 1h]")
			fs.PrintDefaults()
		}
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	for _, s := range settings {
		src, v := "", ""
		switch {
		case set[s.name] && vals[s.name] != nil:
			src, v = "-"+s.name, *vals[s.name]
		case getenv(s.env()) != "":
			src, v = s.env(), getenv(s.env())
		default:
			continue
		}
		if err := s.set(&cfg, v); err != nil {
			shown := strconv.Quote(v)
			if s.secret {
				shown = "(redacted)"
			}
			return cfg, fmt.Errorf("invalid %s %s: %v", src, shown, err)
		}
	}
	if *dev {
		cfg.Dev = true
	}
	if cfg.Store == "" && cfg.RedisURL == "" {
		cfg.Store = "sqlite:" + defaultSQLitePath
	}
	if cfg.Addr == "" {
		// -dev serves /dev/token, which signs a token for anyone: only
		// this machine reaches it unless an address is given.
		cfg.Addr = ":8080"
		if cfg.Dev {
			cfg.Addr = "127.0.0.1:8080"
		}
	}
	return cfg, cfg.validate()
}

// Bounds of VERSION_INTERVAL and VERSIONS: a version a second at most (each
// one is a whole document), a week apart at most; a room's versions fit a
// listing.
const (
	minVersionInterval = time.Second
	maxVersionInterval = 7 * 24 * time.Hour
	maxVersions        = 10000
)

// Bounds of STORE_DELAY: a room changed without pause is written every
// STORE_DELAY, so not more than ten times a second, and never later than
// 10s after its first unsaved change.
const (
	minStoreDelay = 100 * time.Millisecond
	maxStoreDelay = 10 * time.Second
)

// Bounds of MAX_DOC_BYTES.
const (
	minDocBytes = 64 << 10
	maxDocBytes = 512 << 20
)

func (c Config) validate() error {
	switch {
	case c.JWTSecret != "" && c.JWTPublicKeyFile != "":
		return errors.New("set either ROOMCAST_JWT_SECRET or ROOMCAST_JWT_PUBLIC_KEY_FILE, not both")
	case c.JWTPublicKeyFile != "" && len(c.JWTJWKSURLs) > 0:
		return errors.New("set either ROOMCAST_JWT_PUBLIC_KEY_FILE or ROOMCAST_JWT_JWKS_URL, not both")
	case c.JWTSecret == "" && c.JWTPublicKeyFile == "" && len(c.JWTJWKSURLs) == 0 && !c.Dev:
		return errors.New("no token key: set ROOMCAST_JWT_SECRET, ROOMCAST_JWT_PUBLIC_KEY_FILE or ROOMCAST_JWT_JWKS_URL (or run with -dev)")
	case c.JWTSecret != "" && len(c.JWTSecret) < 32:
		return errors.New("ROOMCAST_JWT_SECRET must be at least 32 bytes")
	case c.PingInterval < 100*time.Millisecond:
		return errors.New("ROOMCAST_PING_INTERVAL must be at least 100ms")
	case c.PresenceTTL < time.Second:
		return errors.New("ROOMCAST_PRESENCE_TTL must be at least 1s")
	case c.HistorySize > 100000:
		return errors.New("ROOMCAST_HISTORY_SIZE must be at most 100000")
	case c.SendQueueBytes > maxSendQueueBytes:
		return fmt.Errorf("ROOMCAST_SEND_QUEUE_BYTES must be at most %d", maxSendQueueBytes)
	case c.HistoryTTL < time.Second:
		return errors.New("ROOMCAST_HISTORY_TTL must be at least 1s")
	case c.ReadTimeout < 100*time.Millisecond:
		return errors.New("ROOMCAST_READ_TIMEOUT must be at least 100ms")
	case c.DocTTL < time.Second:
		return errors.New("ROOMCAST_DOC_TTL must be at least 1s")
	case c.MaxDocBytes > maxDocBytes:
		return fmt.Errorf("ROOMCAST_MAX_DOC_BYTES must be at most %d (512 MiB, the largest value Redis stores)", maxDocBytes)
	case c.MaxInflightBytes < c.MaxDocBytes:
		return fmt.Errorf("ROOMCAST_MAX_INFLIGHT_BYTES (%d) must be at least ROOMCAST_MAX_DOC_BYTES (%d), or a message of the largest document could never be read", c.MaxInflightBytes, c.MaxDocBytes)
	case c.VersionInterval < minVersionInterval || c.VersionInterval > maxVersionInterval:
		return fmt.Errorf("ROOMCAST_VERSION_INTERVAL must be %s to %s", minVersionInterval, maxVersionInterval)
	case c.Versions > maxVersions:
		return fmt.Errorf("ROOMCAST_VERSIONS must be at most %d", maxVersions)
	case c.StoreDelay < minStoreDelay || c.StoreDelay > maxStoreDelay:
		return fmt.Errorf("ROOMCAST_STORE_DELAY must be %s to %s", minStoreDelay, maxStoreDelay)
	case c.Heartbeat <= 0 || c.Heartbeat >= c.PresenceTTL:
		return fmt.Errorf("ROOMCAST_HEARTBEAT (%s) must be above zero and below ROOMCAST_PRESENCE_TTL (%s)", c.Heartbeat, c.PresenceTTL)
	}
	if err := c.validateStore(); err != nil {
		return err
	}
	if err := c.validateWebhooks(); err != nil {
		return err
	}
	if c.RedisURL != "" {
		if _, ok, err := parseClusterURL(c.RedisURL); ok {
			if err != nil {
				return fmt.Errorf("ROOMCAST_REDIS_URL: %w", err)
			}
		} else if u, err := url.Parse(c.RedisURL); err != nil || (u.Scheme != "redis" && u.Scheme != "rediss" && u.Scheme != "unix") {
			return errors.New("ROOMCAST_REDIS_URL must look like redis://host:6379/0, or redis-cluster://host:port,host:port for a Redis Cluster")
		}
	}
	return nil
}

// defaultSQLitePath is the store of an instance without Redis, under the
// working directory.
const defaultSQLitePath = "roomcast-data/roomcast.db"

// storeKind returns the kind of the configured store: "sqlite",
// "postgres", "memory" or "" (none: Redis is the only copy), and its
// location.
func (c Config) storeKind() (kind, where string) {
	switch {
	case c.Store == "":
		return "", ""
	case c.Store == "memory":
		return "memory", ""
	case strings.HasPrefix(c.Store, "sqlite:"):
		return "sqlite", strings.TrimPrefix(c.Store, "sqlite:")
	case strings.HasPrefix(c.Store, "postgres://"), strings.HasPrefix(c.Store, "postgresql://"):
		return "postgres", c.Store
	}
	return "unknown", ""
}

func (c Config) validateStore() error {
	kind, where := c.storeKind()
	switch {
	case kind == "unknown":
		return errors.New("ROOMCAST_STORE must be sqlite:PATH, postgres://… or memory")
	case kind == "sqlite" && where == "":
		return errors.New("ROOMCAST_STORE: sqlite: needs a file path (sqlite:roomcast-data/roomcast.db)")
	case kind == "sqlite" && c.RedisURL != "":
		return errors.New("ROOMCAST_STORE: a sqlite file is one instance's; with ROOMCAST_REDIS_URL use postgres://… or memory")
	case kind == "postgres":
		if u, err := url.Parse(where); err != nil || u.Host == "" {
			return errors.New("ROOMCAST_STORE: not a postgres://user@host:port/database URL")
		}
	}
	return nil
}

// LogValue-free summary for the start-up log: secrets redacted.
func (c Config) logAttrs() []any {
	mode := "memory"
	if c.RedisURL != "" {
		mode = "redis"
		if _, ok, _ := parseClusterURL(c.RedisURL); ok {
			mode = "redis-cluster"
		}
	}
	storeKind, _ := c.storeKind()
	if storeKind == "" {
		storeKind = "none (Redis is the only copy)"
	}
	return []any{
		"addr", c.Addr, "mode", mode, "store", storeKind, "dev", c.Dev,
		"presence_ttl", c.PresenceTTL.String(), "ping_interval", c.PingInterval.String(), "heartbeat", c.Heartbeat.String(), "leave_grace", c.LeaveGrace.String(),
		"max_message_bytes", c.MaxMessageBytes, "send_queue", c.SendQueue, "send_queue_bytes", c.SendQueueBytes, "rate", c.Rate,
		"history_size", c.HistorySize, "history_ttl", c.HistoryTTL.String(), "max_state_bytes", c.MaxStateBytes,
		"doc_ttl", c.DocTTL.String(), "read_timeout", c.ReadTimeout.String(), "max_conns_per_ip", c.MaxConnsPerIP,
		"max_doc_bytes", c.MaxDocBytes, "max_inflight_bytes", c.MaxInflightBytes,
		"version_interval", c.VersionInterval.String(), "versions", c.Versions, "store_delay", c.StoreDelay.String(),
		"allowed_origins", c.AllowedOrigins, "api_key_set", c.APIKey != "",
		"webhook_urls", len(c.WebhookURLs), "webhook_vacate_delay", c.WebhookVacateDelay.String(),
	}
}
