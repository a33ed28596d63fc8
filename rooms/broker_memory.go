package rooms

import (
	"context"
	"errors"
	"sync"
)

// MemoryBroker is the Broker of a single instance: Publish delivers to the
// local Receiver at once, in the caller's goroutine.
type MemoryBroker struct {
	mu     sync.RWMutex
	recv   Receiver
	subs   map[string]struct{}
	closed bool
}

var _ Broker = (*MemoryBroker)(nil)

// NewMemoryBroker returns an in-memory broker.
func NewMemoryBroker() *MemoryBroker {
	return &MemoryBroker{subs: make(map[string]struct{})}
}

// Start implements Broker.
func (b *MemoryBroker) Start(_ context.Context, r Receiver) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.recv != nil {
		return errors.New("rooms: memory broker already started")
	}
	b.recv = r
	return nil
}

// Publish implements Broker.
func (b *MemoryBroker) Publish(_ context.Context, room string, payload []byte) error {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.closed || b.recv == nil {
		return ErrBrokerDown
	}
	if _, ok := b.subs[room]; ok {
		b.recv.Deliver(room, payload)
	}
	return nil
}

// Subscribe implements Broker.
func (b *MemoryBroker) Subscribe(_ context.Context, room string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return ErrBrokerDown
	}
	b.subs[room] = struct{}{}
	return nil
}

// Unsubscribe implements Broker.
func (b *MemoryBroker) Unsubscribe(_ context.Context, room string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.subs, room)
	return nil
}

// Ready implements Broker.
func (b *MemoryBroker) Ready(context.Context) error {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.closed || b.recv == nil {
		return ErrBrokerDown
	}
	return nil
}

// Close implements Broker.
func (b *MemoryBroker) Close() error {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	return nil
}
