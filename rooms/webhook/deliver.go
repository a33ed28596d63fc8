package webhook

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"
)

// attempt sends it to every URL it still has to reach and says what
// becomes of it.
func (w *Webhooks) attempt(ctx context.Context, it item) outcome {
	targets := it.targets
	if targets == nil {
		targets = make([]int, len(w.o.URLs))
		for i := range targets {
			targets[i] = i
		}
	}
	errs := make([]error, len(targets))
	if len(targets) == 1 {
		errs[0] = w.post(ctx, targets[0], it)
	} else {
		var wg sync.WaitGroup
		for i, t := range targets {
			wg.Go(func() { errs[i] = w.post(ctx, t, it) })
		}
		wg.Wait()
	}
	var failed []int
	var firstErr error
	for i, err := range errs {
		if err != nil {
			failed = append(failed, targets[i])
			if firstErr == nil {
				firstErr = err
			}
		}
	}
	now := w.o.Now()
	if len(failed) == 0 {
		w.metrics.delivered.Inc()
		if it.attempts == 0 {
			w.metrics.delay.Observe(now.Sub(time.UnixMilli(it.created)).Seconds())
		}
		return outcome{it: it, remove: true}
	}
	if ctx.Err() != nil {
		// Shutting down: not the receiver's failure. The event is due at
		// once for whichever instance delivers next.
		return outcome{it: it, due: now.UnixMilli()}
	}
	next := it
	next.attempts++
	next.targets = failed
	wait := w.o.Backoff.Wait(next.attempts)
	if now.Add(wait).Sub(time.UnixMilli(it.created)) > w.o.MaxAge {
		w.metrics.dropped.WithLabelValues("expired").Inc()
		w.log.Warn("webhook: event dropped after its last try", "room", it.room, "type", it.typ, "id", it.id(),
			"attempts", next.attempts, "err", firstErr)
		return outcome{it: it, remove: true}
	}
	w.metrics.retried.Inc()
	w.log.Debug("webhook: attempt failed, retrying", "room", it.room, "type", it.typ, "id", it.id(),
		"attempts", next.attempts, "wait", wait, "err", firstErr)
	return outcome{it: next, due: now.Add(wait).UnixMilli()}
}

// post sends it to URL t once: nil for a 2xx answer within the timeout.
func (w *Webhooks) post(ctx context.Context, t int, it item) error {
	if t < 0 || t >= len(w.o.URLs) {
		return nil // a URL the configuration no longer has
	}
	ctx, cancel := context.WithTimeout(ctx, w.o.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.o.URLs[t], bytes.NewReader(it.body))
	if err != nil {
		return fmt.Errorf("make request: %w", err)
	}
	id, ts := it.id(), w.o.Now().Unix()
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "roomcast-webhooks")
	req.Header.Set("webhook-id", id)
	req.Header.Set("webhook-timestamp", strconv.FormatInt(ts, 10))
	req.Header.Set("webhook-signature", w.o.Signer.Sign(id, ts, it.body))
	resp, err := w.o.Client.Do(req)
	if err != nil {
		// Not the URL itself in logs: it may carry a token.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("URL %d: %w", t+1, err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("URL %d answered %d", t+1, resp.StatusCode)
	}
	return nil
}
