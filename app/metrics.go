package main

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"sync/atomic"

	roomstore "github.com/roomcast/roomcast/rooms/store"
)

// metrics are the Prometheus series of one instance, on their own registry
// so tests and several servers in one process do not collide.
type metrics struct {
	reg         *prometheus.Registry
	connections prometheus.Gauge
	connects    prometheus.Counter
	rooms       prometheus.GaugeFunc
	messagesIn  prometheus.Counter
	framesOut   prometheus.CounterFunc
	// framesWritten counts frames written to clients: every transport adds
	// to it directly (a hot, shared word, not a per-connection closure
	// and a prometheus call per delivery), and the counter reads it.
	framesWritten  atomic.Uint64
	published      prometheus.Counter
	slowDropped    prometheus.Counter
	rateLimited    prometheus.Counter
	authFailures   *prometheus.CounterVec
	closes         *prometheus.CounterVec
	brokerGaps     prometheus.Counter
	streamGaps     *prometheus.CounterVec
	streamForks    prometheus.Counter
	protocolErrors prometheus.Counter
	heartbeatErr   prometheus.Counter
	yjsConnections prometheus.Gauge
	yjsUpdates     prometheus.Counter
	yjsRejected    *prometheus.CounterVec
	yjsCompactions prometheus.Counter
	yjsGaps        prometheus.Counter
	connsRefused   *prometheus.CounterVec
	acceptErrors   prometheus.Counter
	notReady       *prometheus.CounterVec
	storeSaves     *prometheus.CounterVec
	storeLoads     *prometheus.CounterVec
	// Size limits: upgrades refused while a user and room back off, and
	// the bytes of large frames being read (MAX_INFLIGHT_BYTES).
	sizeBackoffs  prometheus.Counter
	inflightBytes prometheus.GaugeFunc
}

func newMetrics(localRooms func() int, inflight func() int64) *metrics {
	m := &metrics{reg: prometheus.NewRegistry()}
	m.connections = prometheus.NewGauge(prometheus.GaugeOpts{Name: "roomcast_connections", Help: "Open WebSocket connections on this instance."})
	m.connects = prometheus.NewCounter(prometheus.CounterOpts{Name: "roomcast_connects_total", Help: "WebSocket connections accepted."})
	m.rooms = prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "roomcast_rooms", Help: "Rooms with a connection on this instance."}, func() float64 { return float64(localRooms()) })
	m.messagesIn = prometheus.NewCounter(prometheus.CounterOpts{Name: "roomcast_messages_in_total", Help: "Frames received from clients."})
	m.framesOut = prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "roomcast_frames_out_total", Help: "Frames written to clients."},
		func() float64 { return float64(m.framesWritten.Load()) })
	m.published = prometheus.NewCounter(prometheus.CounterOpts{Name: "roomcast_messages_published_total", Help: "Messages published to rooms by clients and the HTTP API."})
	m.slowDropped = prometheus.NewCounter(prometheus.CounterOpts{Name: "roomcast_slow_consumers_dropped_total", Help: "Connections closed with 4008 because their send queue was full."})
	m.rateLimited = prometheus.NewCounter(prometheus.CounterOpts{Name: "roomcast_rate_limited_total", Help: "Client frames dropped for exceeding the rate."})
	m.authFailures = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "roomcast_auth_failures_total", Help: "Refused connections and API calls, by reason."}, []string{"reason"})
	m.closes = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "roomcast_closes_total", Help: "Connections that ended with a close frame from the server, by its code (1000 answers a client's close; 0 is not counted: the socket just dropped)."}, []string{"code"})
	m.brokerGaps = prometheus.NewCounter(prometheus.CounterOpts{Name: "roomcast_broker_gaps_total", Help: "Pub/sub reconnects after which rooms were resynchronised."})
	m.streamGaps = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "roomcast_stream_gaps_total", Help: "Gaps in a room's stored messages seen on delivery: filled from the history, or lost (the room's connections closed with 4010)."}, []string{"outcome"})
	m.streamForks = prometheus.NewCounter(prometheus.CounterOpts{Name: "roomcast_stream_forks_total", Help: "Rooms this instance found forked: a stored message it delivered is not in the room's history (a Redis failover lost it and gave its seq to another). The room moves to a new epoch and its connections resync (4010)."})
	m.reg.MustRegister(m.streamForks)
	m.protocolErrors = prometheus.NewCounter(prometheus.CounterOpts{Name: "roomcast_protocol_errors_total", Help: "Connections closed for a frame that breaks the WebSocket protocol (1002) or is not valid UTF-8 (1007)."})
	m.heartbeatErr = prometheus.NewCounter(prometheus.CounterOpts{Name: "roomcast_presence_heartbeat_failures_total", Help: "Presence heartbeats or sweeps that failed."})
	m.yjsConnections = prometheus.NewGauge(prometheus.GaugeOpts{Name: "roomcast_yjs_connections", Help: "Open Yjs (y-websocket) connections on this instance."})
	m.yjsUpdates = prometheus.NewCounter(prometheus.CounterOpts{Name: "roomcast_yjs_updates_total", Help: "Yjs document updates stored from this instance's clients."})
	m.yjsRejected = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "roomcast_yjs_rejected_total", Help: "Yjs sockets closed for a frame that is not a valid y-websocket message, by reason (invalid, too_big, doc_too_large, over_budget, text)."}, []string{"reason"})
	m.yjsCompactions = prometheus.NewCounter(prometheus.CounterOpts{Name: "roomcast_yjs_compactions_total", Help: "Yjs documents compacted by this instance."})
	m.yjsGaps = prometheus.NewCounter(prometheus.CounterOpts{Name: "roomcast_yjs_gaps_total", Help: "Gaps in a document's updates seen on delivery and filled from the store."})
	m.connsRefused = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "roomcast_connections_refused_total", Help: "Sockets closed at accept for a connection cap, by cap (instance_cap, ip_cap)."}, []string{"reason"})
	m.acceptErrors = prometheus.NewCounter(prometheus.CounterOpts{Name: "roomcast_accept_errors_total", Help: "Temporary accept errors (out of descriptors or buffers), each retried after a backoff."})
	m.notReady = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "roomcast_readyz_failures_total", Help: "/readyz answers of 503, by what was not ready (draining, redis, pubsub); the log has the cause."}, []string{"part"})
	m.storeSaves = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "roomcast_store_saves_total", Help: "Rooms this instance wrote behind Redis to the store, by outcome (ok, error)."}, []string{"outcome"})
	m.storeLoads = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "roomcast_store_loads_total", Help: "Rooms Redis did not hold that this instance loaded back from the store, by part (stream: position, history and state; doc); a room two instances missed at once is counted once."}, []string{"part"})
	m.reg.MustRegister(m.connsRefused, m.acceptErrors, m.notReady, m.storeSaves, m.storeLoads)
	m.sizeBackoffs = prometheus.NewCounter(prometheus.CounterOpts{Name: "roomcast_size_backoff_refusals_total", Help: "WebSocket upgrades refused with 429 because the user's socket in the room was closed for size (1009) or the in-flight budget (1013) moments before."})
	m.inflightBytes = prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "roomcast_inflight_bytes", Help: "Bytes of large client frames being read or handled now, against ROOMCAST_MAX_INFLIGHT_BYTES."}, func() float64 { return float64(inflight()) })
	m.reg.MustRegister(m.sizeBackoffs, m.inflightBytes)
	m.reg.MustRegister(m.yjsConnections, m.yjsUpdates, m.yjsRejected, m.yjsCompactions, m.yjsGaps)
	m.reg.MustRegister(m.connections, m.connects, m.rooms, m.messagesIn, m.framesOut, m.published, m.slowDropped,
		m.rateLimited, m.authFailures, m.closes, m.brokerGaps, m.streamGaps, m.protocolErrors, m.heartbeatErr,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// watchStore adds the store's counters: what this instance committed to
// it (on Redis, its write-behind saves; on SQLite, every stored message,
// state and document update).
func (m *metrics) watchStore(st roomstore.Store) {
	counter := func(name, help string, f func(roomstore.Stats) int64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return float64(f(roomstore.StatsOf(st))) })
	}
	m.reg.MustRegister(
		counter("roomcast_store_commits_total", "Transactions this instance committed to the store.", func(s roomstore.Stats) int64 { return s.Commits }),
		counter("roomcast_store_ops_total", "Writes (a message, a state, a document update, a room's save…) this instance committed to the store.", func(s roomstore.Stats) int64 { return s.Ops }),
		counter("roomcast_store_written_bytes_total", "Bytes of messages, states and document data this instance's committed writes carried to the store.", func(s roomstore.Stats) int64 { return s.Written }),
	)
}
