package main

import (
	"context"
	"fmt"

	"github.com/redis/go-redis/v9"

	"github.com/roomcast/roomcast/presence"
	"github.com/roomcast/roomcast/rooms"
)

// buildRedisBackends wires the Redis broker and presence store: every
// instance on the same Redis shares rooms and presence.
func (s *Server) buildRedisBackends(popts presence.Options, hubOpts rooms.HubOptions) error {
	opt, err := redis.ParseURL(s.cfg.RedisURL)
	if err != nil {
		return fmt.Errorf("ROOMCAST_REDIS_URL: %w", err)
	}
	// A failed publish is reported, never retried blindly: a retry after a
	// timeout could deliver a message twice.
	opt.MaxRetries = -1
	s.redis = redis.NewClient(opt)
	s.broker = rooms.NewRedisBroker(s.redis, rooms.RedisBrokerOptions{
		Logger: s.log,
		OnGap:  func() { s.metrics.brokerGaps.Inc() },
		OnPublishError: func(err error) {
			s.log.Warn("publish batch lost", "err", err)
		},
		Stream: s.streamOptions(),
	})
	s.hub = rooms.NewHub(s.broker, hubOpts)
	s.store = presence.NewRedisStore(s.redis, presence.RedisOptions{Options: popts, Logger: s.log, OnReassert: s.syncCluster})
	return nil
}

// syncCluster checks the rooms' Yjs documents and sends every client of
// rooms, on every instance, the rooms' member lists: after a Redis flush, the store forgot users whose last
// socket closed before the next heartbeat, and no leave will ever say so.
// It goes through the room channels, so it follows the re-added sessions'
// events; an instance that re-asserts later sends its own joins after it.
func (s *Server) syncCluster(ctx context.Context, roomNames []string) {
	// The documents may be gone too: their providers put them back.
	s.docs.resync(roomNames)
	for _, name := range roomNames {
		frame, err := s.syncFrameOf(ctx, name)
		if err != nil {
			s.log.Warn("sync after re-assert", "room", name, "err", err)
			continue
		}
		if err := s.hub.Publish(ctx, name, "", frame); err != nil {
			s.log.Warn("sync after re-assert: publish", "room", name, "err", err)
		}
	}
}
