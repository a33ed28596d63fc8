// Command roomcast serves rooms over WebSocket: messages to everyone in a
// room and presence of who is online, on one instance in memory or on many
// sharing Redis. "roomcast token" mints a user token for local use.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/roomcast/roomcast/auth"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "token" {
		if err := mintCommand(os.Args[2:], os.Getenv, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "roomcast token:", err)
			os.Exit(2)
		}
		return
	}
	cfg, err := loadConfig(os.Args[1:], os.Getenv)
	if err == flag.ErrHelp {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "roomcast: config:", err)
		os.Exit(2)
	}
	if err := run(cfg); err != nil {
		fmt.Fprintln(os.Stderr, "roomcast:", err)
		os.Exit(1)
	}
}

func run(cfg Config) error {
	var h slog.Handler = slog.NewJSONHandler(os.Stderr, nil)
	if cfg.Dev {
		h = slog.NewTextHandler(os.Stderr, nil)
	}
	log := slog.New(h)
	if cfg.Dev && cfg.APIKey == "" {
		cfg.APIKey = randomKey()
	}
	s, err := newServer(cfg, log)
	if err != nil {
		return err
	}
	raw, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Addr, err)
	}
	maxConns := cfg.MaxConns
	if maxConns == 0 {
		maxConns = defaultMaxConns(descriptorLimit())
	}
	log.Info("connection caps", "max_conns", maxConns, "max_conns_per_ip", cfg.MaxConnsPerIP, "descriptor_limit", descriptorLimit())
	ln := newGuardedListener(raw, s.log, maxConns, cfg.MaxConnsPerIP, s.metrics)
	if cfg.Dev {
		if cfg.JWTSecret != "" {
			log.Warn("dev mode with ROOMCAST_JWT_SECRET: /dev/token signs tokens for any user and room with that secret; never expose this instance")
		}
		printDevBanner(s, ln.Addr())
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	return s.Run(ctx, ln)
}

// printDevBanner prints, once and to stdout rather than the log, where to
// start: the room URL (each window picks a name and gets a /dev/token), a
// ready-made join URL with a token for scripts, and the API key.
func printDevBanner(s *Server, addr net.Addr) {
	host := "localhost"
	port := addr.(*net.TCPAddr).Port
	base := fmt.Sprintf("http://%s:%d", host, port)
	tok, err := auth.MintHS256(s.devKey, auth.MintOptions{Subject: "dev", Name: "Dev", TTL: devTokenTTL,
		Issuer: s.cfg.JWTIssuer, Audience: s.cfg.JWTAudience})
	if err != nil {
		return
	}
	fmt.Printf("roomcast dev mode\n"+
		"  open %s/r/lobby in two windows and type a name in each\n"+
		"  landing page:  %s/\n"+
		"  join as 'dev': %s/r/lobby?token=%s\n"+
		"  API key:       %s\n", base, base, base, tok, s.cfg.APIKey)
}

// mintCommand implements "roomcast token": it signs an HS256 token with the
// configured secret (ROOMCAST_JWT_SECRET or -jwt-secret).
func mintCommand(args []string, getenv func(string) string, out *os.File) error {
	fs := flag.NewFlagSet("roomcast token", flag.ContinueOnError)
	sub := fs.String("sub", "", "user id (required)")
	name := fs.String("name", "", "display name")
	room := fs.String("room", "", "rooms the holder may write, comma-separated; a trailing * makes a prefix (default: every room, unless -read is set)")
	read := fs.String("read", "", "rooms the holder may join read-only, in the same form (the read claim)")
	ttl := fs.Duration("ttl", time.Hour, "lifetime")
	meta := fs.String("meta", "", "initial meta, a JSON object")
	secret := fs.String("jwt-secret", getenv("ROOMCAST_JWT_SECRET"), "HS256 secret (env ROOMCAST_JWT_SECRET)")
	iss := fs.String("jwt-issuer", getenv("ROOMCAST_JWT_ISSUER"), "iss claim (env ROOMCAST_JWT_ISSUER)")
	aud := fs.String("jwt-audience", getenv("ROOMCAST_JWT_AUDIENCE"), "aud claim (env ROOMCAST_JWT_AUDIENCE)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *secret == "" {
		return fmt.Errorf("no secret: set ROOMCAST_JWT_SECRET or -jwt-secret")
	}
	o := auth.MintOptions{Subject: *sub, Name: *name, TTL: *ttl, Issuer: *iss, Audience: *aud}
	if *room != "" {
		o.Rooms = strings.Split(*room, ",")
	}
	if *read != "" {
		o.Read = strings.Split(*read, ",")
	}
	if *meta != "" {
		o.Meta = []byte(*meta)
	}
	tok, err := auth.MintHS256([]byte(*secret), o)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(out, tok)
	return err
}
