package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/roomcast/roomcast/presence"
	"github.com/roomcast/roomcast/rooms"
)

// buildRedisBackends wires the Redis broker and presence store: every
// instance on the same Redis (or Redis Cluster) shares rooms and presence.
func (s *Server) buildRedisBackends(popts presence.Options, hubOpts rooms.HubOptions) error {
	client, err := newRedisClient(s.cfg.RedisURL)
	if err != nil {
		return fmt.Errorf("ROOMCAST_REDIS_URL: %w", err)
	}
	s.redis = client
	o := s.streamOptions()
	if kind, _ := s.cfg.storeKind(); kind == "postgres" {
		// Written behind Redis: Redis is the hot tier.
		kept, err := s.openStore()
		if err != nil {
			_ = client.Close()
			return err
		}
		s.roomStore, o.Store = kept, kept
		s.versions = newVersions(s, kept)
	}
	b := rooms.NewRedisBroker(s.redis, rooms.RedisBrokerOptions{
		Logger: s.log,
		OnGap:  func() { s.metrics.brokerGaps.Inc() },
		OnPublishError: func(err error) {
			s.log.Warn("publish batch lost", "err", err)
		},
		Stream:       o,
		StoreDelay:   s.cfg.StoreDelay,
		FlushTimeout: s.cfg.ShutdownTimeout,
		OnSave:       s.roomSaved,
		OnLoad:       s.roomLoaded,
	})
	s.broker = b
	if o.Store != nil {
		s.saver = b
	}
	s.hub = s.newHub(hubOpts)
	wh, err := s.redisWebhooks()
	if err != nil {
		_ = client.Close()
		return err
	}
	s.store = presence.NewRedisStore(s.redis, presence.RedisOptions{Options: popts, Logger: s.log, OnReassert: s.syncCluster, Webhooks: wh})
	return nil
}

// Cluster URL schemes: "redis-cluster://[user:password@]host:port[,host:port…][?options]",
// TLS with "rediss-cluster://". The hosts are seed nodes; the client
// learns the others from them. Options are go-redis' ClusterOptions
// query parameters (dial_timeout=3s, …).
const (
	clusterScheme    = "redis-cluster://"
	clusterTLSScheme = "rediss-cluster://"
)

// newRedisClient returns the client of url: a *redis.ClusterClient for the
// cluster form, else a *redis.Client.
func newRedisClient(url string) (redis.UniversalClient, error) {
	if copt, ok, err := parseClusterURL(url); ok {
		if err != nil {
			return nil, err
		}
		// A failed publish is reported, never retried blindly: a retry after a
		// timeout could deliver a message twice. Redirections (MOVED, ASK:
		// the command did not run) are still followed.
		copt.MaxRetries = -1
		// Neither CLIENT SETINFO nor CLIENT MAINT_NOTIFICATIONS on each
		// connection: Redis before 7.2 answers them with an error, which
		// would blur the errorstats operators (and the cluster tests)
		// watch for cross-slot errors.
		copt.DisableIdentity = true
		copt.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
		copt.NewClient = func(o *redis.Options) *redis.Client {
			if o.Dialer == nil {
				o.Dialer = rawDialer(redis.NewDialer(o))
			}
			return redis.NewClient(o)
		}
		return redis.NewClusterClient(copt), nil
	}
	opt, err := redis.ParseURL(url)
	if err != nil {
		return nil, err
	}
	opt.MaxRetries = -1
	// Reads and writes on the connections are raw system calls: see
	// rawTCPConn.
	opt.Dialer = rawDialer(redis.NewDialer(opt))
	return redis.NewClient(opt), nil
}

// parseClusterURL parses the cluster form of a Redis URL; ok is false for
// any other form.
func parseClusterURL(url string) (opt *redis.ClusterOptions, ok bool, err error) {
	scheme := "redis://"
	rest, found := strings.CutPrefix(url, clusterScheme)
	if !found {
		if rest, found = strings.CutPrefix(url, clusterTLSScheme); !found {
			return nil, false, nil
		}
		scheme = "rediss://"
	}
	query := ""
	if i := strings.IndexByte(rest, '?'); i >= 0 {
		rest, query = rest[:i], rest[i+1:]
	}
	rest = strings.TrimSuffix(rest, "/")
	if strings.Contains(rest, "/") {
		return nil, true, errors.New("a cluster URL names no database: redis-cluster://host:port,host:port")
	}
	user := ""
	if i := strings.LastIndexByte(rest, '@'); i >= 0 {
		user, rest = rest[:i+1], rest[i+1:]
	}
	hosts := strings.Split(rest, ",")
	var extra []string
	for i, h := range hosts {
		if _, _, err := net.SplitHostPort(h); err != nil {
			return nil, true, fmt.Errorf("cluster node %q: want host:port", h)
		}
		if i > 0 {
			extra = append(extra, "addr="+h)
		}
	}
	if query != "" {
		extra = append(extra, query)
	}
	u := scheme + user + hosts[0]
	if len(extra) > 0 {
		u += "?" + strings.Join(extra, "&")
	}
	opt, err = redis.ParseClusterURL(u)
	if err != nil {
		return nil, true, err
	}
	return opt, true, nil
}

// syncCluster checks the Yjs documents of rooms whose presence the store
// had lost (a Redis flush or restart): the documents may be gone too, and
// their providers put them back. The rooms' member lists went out with
// the heartbeat that re-added their sessions (presence/heartbeat.lua):
// read and published in one step, no list can overtake a newer event, as
// one read here and published after another instance's re-add would.
func (s *Server) syncCluster(_ context.Context, roomNames []string) {
	s.docs.Resync(roomNames)
}
