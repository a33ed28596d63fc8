// Package rooms owns the rooms of one instance: which local connections are
// in which room, each connection's bounded send queue and its writer, and the
// Broker that carries a room's payloads between instances (in memory for a
// single instance, Redis pub/sub for a cluster).
//
// A payload walks one way: a connection's read loop hands a frame to
// Hub.Publish, the Broker carries it to every instance subscribed to the
// room (this one included), and Hub.Deliver enqueues the same bytes on every
// local connection of the room.
package rooms
