//go:build linux

package main

import "syscall"

// msgNoSignal makes a send to a reset peer fail with EPIPE instead of
// raising SIGPIPE.
const msgNoSignal = syscall.MSG_NOSIGNAL
