package main

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/roomcast/roomcast/presence"
	roomstore "github.com/roomcast/roomcast/rooms/store"
	"github.com/roomcast/roomcast/rooms/webhook"
)

// Bounds of the webhook retry waits: the spec's schedule is 1 s doubling
// to 10 min; shorter ones are for tests and impatient receivers.
const (
	minWebhookRetry = 10 * time.Millisecond
	maxWebhookRetry = 10 * time.Minute
)

// parseWebhookURLs parses WEBHOOK_URL: comma-separated http(s) URLs.
func parseWebhookURLs(v string) ([]string, error) {
	var out []string
	for _, s := range strings.Split(v, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		u, err := url.Parse(s)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, errors.New("each URL must be http:// or https:// with a host")
		}
		out = append(out, s)
	}
	return out, nil
}

func (c Config) validateWebhooks() error {
	switch {
	case len(c.WebhookURLs) == 0 && c.WebhookSecret != "":
		return errors.New("ROOMCAST_WEBHOOK_SECRET is set but ROOMCAST_WEBHOOK_URL is not")
	case len(c.WebhookURLs) == 0:
		return nil
	case c.WebhookSecret == "":
		return errors.New("ROOMCAST_WEBHOOK_URL needs ROOMCAST_WEBHOOK_SECRET (whsec_ + base64) to sign its requests")
	case c.WebhookVacateDelay <= 0:
		return errors.New("ROOMCAST_WEBHOOK_VACATE_DELAY must be above zero")
	case c.WebhookRetryMin < minWebhookRetry || c.WebhookRetryMin > maxWebhookRetry:
		return fmt.Errorf("ROOMCAST_WEBHOOK_RETRY_MIN must be %s to %s", minWebhookRetry, maxWebhookRetry)
	case c.WebhookRetryMax < c.WebhookRetryMin || c.WebhookRetryMax > maxWebhookRetry:
		return fmt.Errorf("ROOMCAST_WEBHOOK_RETRY_MAX must be ROOMCAST_WEBHOOK_RETRY_MIN (%s) to %s", c.WebhookRetryMin, maxWebhookRetry)
	}
	if _, err := webhook.ParseSecret(c.WebhookSecret); err != nil {
		return fmt.Errorf("ROOMCAST_WEBHOOK_SECRET: %w", err)
	}
	return nil
}

func (s *Server) webhookOptions() webhook.Options {
	signer, _ := webhook.ParseSecret(s.cfg.WebhookSecret) // checked by validate
	return webhook.Options{
		URLs:        s.cfg.WebhookURLs,
		Signer:      signer,
		VacateDelay: s.cfg.WebhookVacateDelay,
		Backoff:     webhook.Backoff{Base: s.cfg.WebhookRetryMin, Max: s.cfg.WebhookRetryMax},
		MaxPending:  s.cfg.WebhookMaxPending,
		Instance:    s.cfg.InstanceID,
		Logger:      s.log,
	}
}

// memoryWebhooks sets up webhooks of an instance without Redis: the
// queue lives in this process, kept in the store when it has one, and
// hears presence through popts.Events.
func (s *Server) memoryWebhooks(popts *presence.Options) error {
	if len(s.cfg.WebhookURLs) == 0 {
		return nil
	}
	o := s.webhookOptions()
	var persist webhook.Persister
	if k, ok := s.roomStore.(roomstore.WebhookKeeper); ok {
		persist = storeWebhooks{st: s.roomStore, k: k}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	q, err := webhook.NewMemoryQueue(ctx, o, persist)
	if err != nil {
		return err
	}
	if s.webhooks, err = webhook.New(q, o); err != nil {
		return err
	}
	popts.Events = q
	if persist != nil {
		s.log.Info("webhooks: events wait in the store until delivered", "urls", len(o.URLs), "pending", q.Len())
	} else {
		s.log.Info("webhooks: events wait in memory only: those not yet delivered are lost when the process ends", "urls", len(o.URLs))
	}
	return nil
}

// redisWebhooks sets up webhooks of a cluster: the queue lives in Redis,
// the presence scripts queue member and room events into it, and every
// instance takes part in delivering.
func (s *Server) redisWebhooks() (*presence.Webhooks, error) {
	if len(s.cfg.WebhookURLs) == 0 {
		return nil, nil
	}
	o := s.webhookOptions()
	q := webhook.NewRedisQueue(s.redis, "", 0, o)
	var err error
	if s.webhooks, err = webhook.New(q, o); err != nil {
		return nil, err
	}
	s.log.Info("webhooks: events wait in Redis until delivered, once per cluster", "urls", len(o.URLs))
	return &presence.Webhooks{VacateDelay: o.VacateDelay, MaxPending: webhook.MaxPerQueue(o.MaxPending, q.Queues())}, nil
}

// storeWebhooks keeps the webhook queue of an instance without Redis in
// its store.
type storeWebhooks struct {
	st roomstore.Store
	k  roomstore.WebhookKeeper
}

func (p storeWebhooks) LoadWebhooks(ctx context.Context) ([]webhook.PersistedEvent, error) {
	evs, err := p.k.WebhookEvents(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]webhook.PersistedEvent, len(evs))
	for i, e := range evs {
		out[i] = webhook.PersistedEvent{Key: e.Key, Room: e.Room, Due: e.Due, Record: e.Record}
	}
	return out, nil
}

func (p storeWebhooks) SaveWebhooks(ctx context.Context, puts []webhook.PersistedEvent, dels []int64) error {
	ops := make([]roomstore.Op, 0, len(puts)+len(dels))
	for _, e := range puts {
		ops = append(ops, roomstore.Op{Kind: roomstore.OpWebhookPut, Room: e.Room, Seq: uint64(e.Key), At: e.Due, Data: e.Record})
	}
	for _, k := range dels {
		ops = append(ops, roomstore.Op{Kind: roomstore.OpWebhookDelete, Seq: uint64(k)})
	}
	return p.st.Write(ctx, ops...)
}
