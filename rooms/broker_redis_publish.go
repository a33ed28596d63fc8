package rooms

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// publisher sends queued payloads in order, as many as are waiting (up to
// PublishBatch) in one pipeline: one per master on a cluster, which keeps
// the order of each room (a room lives in one slot).
func (b *RedisBroker) publisher() {
	defer b.wg.Done()
	batch := make([]outgoing, 0, b.o.PublishBatch)
	for {
		select {
		case <-b.stop:
			b.flush(batch)
			return
		case o := <-b.queue:
			batch = b.fill(append(batch[:0], o))
			ctx, cancel := context.WithTimeout(context.Background(), b.o.PublishTimeout)
			b.sendMu.Lock()
			b.send(ctx, &b.pub, batch)
			b.sendMu.Unlock()
			b.queued.Add(-int64(len(batch)))
			cancel()
		}
	}
}

// runInline sends call from the caller's goroutine, as a batch of one:
// with nothing queued, handing it to the publisher goroutine and its
// answer back were two goroutine wake-ups (two threads woken on an idle
// instance) for one round trip. The caller holds sendMu; runInline
// releases it.
func (b *RedisBroker) runInline(ctx context.Context, call *scriptCall) (any, error) {
	if err := ctx.Err(); err != nil {
		b.sendMu.Unlock()
		return nil, fmt.Errorf("wait for redis publish: %w: %w", ErrBrokerDown, err)
	}
	// Its own bound, as the publisher's: once sent, the script runs to
	// its end whatever the caller's context does.
	sctx, cancel := context.WithTimeout(context.Background(), b.o.PublishTimeout)
	one := [1]outgoing{{call: call}}
	b.send(sctx, &b.pub, one[:])
	cancel()
	b.sendMu.Unlock()
	r := <-call.done // send answers every call
	return r.val, r.err
}

// publisherState is the sender's (under RedisBroker.sendMu).
type publisherState struct {
	mu sync.Mutex // the per-master pipelines of one batch run at once
	// Masters whose replica did not confirm in time, until when their
	// batches skip WAIT (a master without a working replica would
	// otherwise hold every batch for ReplicaWait).
	noReplica   map[string]time.Time
	lastWaitLog time.Time
}

func (b *RedisBroker) fill(batch []outgoing) []outgoing {
	for len(batch) < b.o.PublishBatch {
		select {
		case o := <-b.queue:
			batch = append(batch, o)
		default:
			return batch
		}
	}
	return batch
}

// flush sends what is still queued at Close, within one PublishTimeout.
func (b *RedisBroker) flush(batch []outgoing) {
	ctx, cancel := context.WithTimeout(context.Background(), b.o.PublishTimeout)
	defer cancel()
	for ctx.Err() == nil {
		batch = b.fill(batch[:0])
		if len(batch) == 0 {
			return
		}
		b.sendMu.Lock()
		b.send(ctx, &b.pub, batch)
		b.sendMu.Unlock()
		b.queued.Add(-int64(len(batch)))
	}
}

func (b *RedisBroker) send(ctx context.Context, p *publisherState, batch []outgoing) {
	var err error
	if b.cluster == nil {
		err = b.sendTo(ctx, p, "", b.client, batch)
	} else {
		err = b.sendCluster(ctx, p, batch)
	}
	if err == nil {
		return
	}
	err = fmt.Errorf("redis publish of %d payloads: %w", len(batch), err)
	if b.o.OnPublishError != nil {
		b.o.OnPublishError(err)
	}
	// While Redis is down every batch fails: log the first, then at most
	// every 10s.
	if now := time.Now(); now.Sub(b.lastPublishErrLog) > 10*time.Second {
		b.lastPublishErrLog = now
		b.log.Warn("payloads lost", "err", err)
	}
}

// sendCluster sends batch as one pipeline per master, all at once.
func (b *RedisBroker) sendCluster(ctx context.Context, p *publisherState, batch []outgoing) error {
	type group struct {
		client redis.UniversalClient
		items  []outgoing
	}
	groups := make(map[string]*group)
	var order []string
	var firstErr error
	for _, o := range batch {
		key := o.channel
		if o.call != nil {
			key = o.call.keys[0]
		}
		addr, client, err := b.nodeOf(ctx, key)
		if err != nil {
			if o.call != nil {
				o.call.done <- scriptResult{err: err}
			}
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		g := groups[addr]
		if g == nil {
			g = &group{client: client}
			groups[addr] = g
			order = append(order, addr)
		}
		g.items = append(g.items, o)
	}
	var wg sync.WaitGroup
	errs := make([]error, len(order))
	for i, addr := range order {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = b.sendTo(ctx, p, addr, groups[addr].client, groups[addr].items)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil && firstErr == nil {
			firstErr = err
		}
	}
	return firstErr
}

// sendTo sends items in one pipeline on client, the master addr on a
// cluster, and hands each script call its result. On a cluster a batch
// with script calls (stored payloads) ends with WAIT 1, so a master that
// fails over right after cannot take an acknowledged message with it.
func (b *RedisBroker) sendTo(ctx context.Context, p *publisherState, addr string, client redis.UniversalClient, items []outgoing) error {
	wait := false
	if b.cluster != nil {
		p.mu.Lock()
		until, skip := p.noReplica[addr]
		p.mu.Unlock()
		if !skip || time.Now().After(until) {
			for _, o := range items {
				if o.call != nil {
					wait = true
					break
				}
			}
		}
	}
	cmds := make([]redis.Cmder, len(items))
	var waitCmd *redis.IntCmd
	_, _ = client.Pipelined(ctx, func(pl redis.Pipeliner) error {
		for i, o := range items {
			switch {
			case o.call != nil:
				cmds[i] = o.call.script.EvalSha(ctx, pl, o.call.keys, o.call.args...)
			case b.layout.Sharded():
				cmds[i] = pl.SPublish(ctx, o.channel, o.payload)
			default:
				cmds[i] = pl.Publish(ctx, o.channel, o.payload)
			}
		}
		if wait {
			waitCmd = redis.NewIntCmd(ctx, "wait", 1, b.o.ReplicaWait.Milliseconds())
			_ = pl.Process(ctx, waitCmd)
		}
		return nil
	})
	var err error
	for i, o := range items {
		cerr := cmds[i].Err()
		if b.cluster != nil && moved(cerr) {
			// The slot moved (resharding, failover): the command did not
			// run, so sending it once more through the cluster client,
			// which follows the redirection, cannot run it twice.
			b.cluster.ReloadState(ctx)
			cerr = b.resend(ctx, o, &cmds[i])
		}
		if o.call == nil {
			if cerr != nil && err == nil {
				err = cerr
			}
			continue
		}
		var val any
		if cerr == nil {
			val, cerr = cmds[i].(*redis.Cmd).Result()
		}
		if cerr != nil && redis.HasErrorPrefix(cerr, "NOSCRIPT") {
			// Redis restarted, or a replica took over, and does not know
			// the script: it did not run, so running it again (in order)
			// cannot store twice. By its source, with the batch's WAIT
			// behind it on the same connection.
			val, cerr = b.evalWaited(ctx, client, o.call, wait)
		}
		// A room missing from Redis (with a store) is its caller's to
		// load back; nothing was lost.
		if cerr != nil && err == nil && !isMissing(cerr) {
			err = cerr
		}
		o.call.done <- scriptResult{val: val, err: cerr}
	}
	if waitCmd != nil {
		if n, werr := waitCmd.Result(); werr != nil || n < 1 {
			p.mu.Lock()
			now := time.Now()
			p.noReplica[addr] = now.Add(10 * time.Second)
			logIt := now.Sub(p.lastWaitLog) > 10*time.Second
			if logIt {
				p.lastWaitLog = now
			}
			p.mu.Unlock()
			if logIt {
				b.log.Warn("no replica confirmed stored payloads in time; they are on the master only, and batches to it skip the wait for 10s",
					"master", addr, "wait", b.o.ReplicaWait, "err", werr)
			}
		}
	}
	return err
}

// evalWaited runs call by its source on client and, when wait is set,
// waits for a replica to confirm it as sendTo does. A replica that does
// not is logged by the batch's own WAIT.
func (b *RedisBroker) evalWaited(ctx context.Context, client redis.UniversalClient, call *scriptCall, wait bool) (any, error) {
	var ev *redis.Cmd
	_, _ = client.Pipelined(ctx, func(pl redis.Pipeliner) error {
		ev = call.script.Eval(ctx, pl, call.keys, call.args...)
		if wait {
			_ = pl.Process(ctx, redis.NewIntCmd(ctx, "wait", 1, b.o.ReplicaWait.Milliseconds()))
		}
		return nil
	})
	return ev.Result()
}

// resend sends o once more through the cluster client, which follows
// the redirection, replacing its command. The command is marked never to
// be retried: the cluster client would otherwise send it again after a
// read timeout or a dropped connection, when it may have run.
func (b *RedisBroker) resend(ctx context.Context, o outgoing, cmd *redis.Cmder) error {
	if o.call == nil {
		c := redis.NewIntCmd(ctx, "spublish", o.channel, o.payload)
		*cmd = c
		_ = b.client.Process(ctx, noRetry{c})
		return c.Err()
	}
	// A NOSCRIPT answer (the new master never ran it) did not run either:
	// it fails the publish, which its sender re-sends.
	c := b.evalOnce(ctx, "evalsha", o.call.script.Hash(), o.call)
	*cmd = c
	return c.Err()
}

func (b *RedisBroker) evalOnce(ctx context.Context, name, script string, call *scriptCall) *redis.Cmd {
	args := make([]any, 0, 3+len(call.keys)+len(call.args))
	args = append(args, name, script, len(call.keys))
	for _, k := range call.keys {
		args = append(args, k)
	}
	args = append(args, call.args...)
	c := redis.NewCmd(ctx, args...)
	_ = b.client.Process(ctx, noRetry{c})
	return c
}

// noRetry is a command the cluster client must send at most once.
type noRetry struct{ redis.Cmder }

func (noRetry) NoRetry() bool { return true }

// moved reports whether err is a cluster redirection (MOVED or ASK).
func moved(err error) bool {
	return err != nil && (redis.HasErrorPrefix(err, "MOVED") || redis.HasErrorPrefix(err, "ASK"))
}
