//go:build !linux

package main

import "errors"

// poller is Linux's epoll; elsewhere every socket reads on a goroutine of
// its own (wsSock.readOnItsOwn).
type poller struct{}

func newPoller() (*poller, error) { return nil, errors.New("no socket poller on this system") }

func (p *poller) run()   {}
func (p *poller) close() {}

func (p *poller) watch(k *wsSock)      { k.readOnItsOwn() }
func (p *poller) rearm(k *wsSock) bool { return false }
func (p *poller) forget(k *wsSock)     {}
func (p *poller) watched() int         { return 0 }
