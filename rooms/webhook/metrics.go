package webhook

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	pending   prometheus.Gauge
	delivered prometheus.Counter
	retried   prometheus.Counter
	dropped   *prometheus.CounterVec
	delay     prometheus.Histogram
}

func newMetrics() *metrics {
	m := &metrics{
		pending:   prometheus.NewGauge(prometheus.GaugeOpts{Name: "roomcast_webhook_pending", Help: "Webhook events waiting to be delivered, cluster-wide, as last seen by this instance."}),
		delivered: prometheus.NewCounter(prometheus.CounterOpts{Name: "roomcast_webhook_delivered_total", Help: "Webhook events this instance delivered (a 2xx from every URL)."}),
		retried:   prometheus.NewCounter(prometheus.CounterOpts{Name: "roomcast_webhook_retried_total", Help: "Failed webhook attempts scheduled again with backoff."}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "roomcast_webhook_dropped_total",
			Help: "Webhook events given up, by reason: expired (still failing after 24 h), queue_full (the oldest, past ROOMCAST_WEBHOOK_MAX_PENDING), not_queued (the queue could not be written)."}, []string{"reason"}),
		delay: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "roomcast_webhook_delay_seconds",
			Help:    "From an event to its delivery, for events delivered at the first attempt.",
			Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}}),
	}
	for _, r := range []string{"expired", "queue_full", "not_queued"} {
		m.dropped.WithLabelValues(r)
	}
	return m
}

func (m *metrics) register(reg prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{m.pending, m.delivered, m.retried, m.dropped, m.delay} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}
