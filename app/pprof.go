//go:build pprof

package main

import (
	"log/slog"
	"net/http"
	_ "net/http/pprof"
	"os"
)

// Built with -tags pprof only, for profiling under load:
// ROOMCAST_PPROF_ADDR=127.0.0.1:6060 serves net/http/pprof for the life of
// the process.
func init() {
	addr := os.Getenv("ROOMCAST_PPROF_ADDR")
	if addr == "" {
		return
	}
	go func() {
		if err := http.ListenAndServe(addr, nil); err != nil {
			slog.Error("pprof", "err", err)
		}
	}()
}
