//go:build !linux

package main

// msgNoSignal is Linux's MSG_NOSIGNAL; elsewhere the Go runtime's own
// SIGPIPE handling applies (a write to a socket never ends the process).
const msgNoSignal = 0
