package main

import (
	"errors"

	"github.com/roomcast/roomcast/presence"
	"github.com/roomcast/roomcast/rooms"
)

// buildRedisBackends wires the Redis broker and presence store.
func (s *Server) buildRedisBackends(presence.Options, rooms.HubOptions) error {
	return errors.New("ROOMCAST_REDIS_URL: the Redis backends are not wired yet")
}
