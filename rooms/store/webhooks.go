package store

import (
	"context"
	"fmt"
	"time"
)

// WebhookEvent is one webhook event an instance without Redis keeps until
// it is delivered (rooms/webhook's queue): its key in the queue, its room,
// when it is due and its record (the queue's format).
type WebhookEvent struct {
	Key    int64
	Room   string
	Due    time.Time
	Record []byte
}

// WebhookKeeper is a store that keeps webhook events (both SQL stores):
// written with OpWebhookPut and OpWebhookDelete, read back at start.
type WebhookKeeper interface {
	WebhookEvents(ctx context.Context) ([]WebhookEvent, error)
}

var _ WebhookKeeper = (*sqlStore)(nil)

func checkWebhookOp(op *Op) error {
	if op.Seq == 0 || op.Seq > maxSeq {
		return fmt.Errorf("store: webhook op %d with key %d", op.Kind, op.Seq)
	}
	if op.Kind == OpWebhookPut && op.Data == nil {
		return fmt.Errorf("store: webhook event %d without a record", op.Seq)
	}
	return nil
}

func applyWebhook(ctx context.Context, q querier, op Op) error {
	if op.Kind == OpWebhookDelete {
		return q.exec(ctx, `DELETE FROM webhook_events WHERE id = $1`, int64(op.Seq))
	}
	return q.exec(ctx, `INSERT INTO webhook_events (id, room, due, record) VALUES ($1, $2, $3, $4)
		ON CONFLICT (id) DO UPDATE SET room = excluded.room, due = excluded.due, record = excluded.record`,
		int64(op.Seq), op.Room, op.At.UnixMilli(), op.Data)
}

// WebhookEvents returns every kept webhook event, oldest first.
func (s *sqlStore) WebhookEvents(ctx context.Context) ([]WebhookEvent, error) {
	var out []WebhookEvent
	err := s.read(ctx, func(q querier) error {
		rs, err := q.query(ctx, `SELECT id, room, due, record FROM webhook_events ORDER BY id`)
		if err != nil {
			return err
		}
		defer rs.Close()
		for rs.Next() {
			var e WebhookEvent
			var due int64
			if err := rs.Scan(&e.Key, &e.Room, &due, &e.Record); err != nil {
				return err
			}
			e.Due = time.UnixMilli(due)
			out = append(out, e)
		}
		return rs.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("store: read webhook events: %w", err)
	}
	return out, nil
}
