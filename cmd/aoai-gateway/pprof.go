package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"
)

// servePprof serves net/http/pprof on addr, a loopback address, on a mux of its own (never the gateway's, whose
// callers must not reach it), and returns what stops it. Profiles need no key, so they are served only to this
// machine: an operator reaches them through an SSH tunnel or kubectl port-forward. The address bound is checked
// too, as localhost may resolve elsewhere.
func servePprof(addr string, logger *slog.Logger) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("-pprof-addr: %w", err)
	}
	if tcp, ok := ln.Addr().(*net.TCPAddr); !ok || !tcp.IP.IsLoopback() {
		ln.Close()
		return nil, fmt.Errorf("-pprof-addr must be a loopback address, and %q listens on %s", addr, ln.Addr())
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index) // and every named profile: heap, goroutine, allocs, block, …
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	// No write timeout: a CPU profile or a trace takes the seconds its caller asks for.
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelWarn)}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	logger.Info("aoai-gateway pprof listening", "addr", ln.Addr().String())
	return func() {
		srv.Close() // a profile being taken is cut: the gateway is stopping
		if err := <-served; !errors.Is(err, http.ErrServerClosed) {
			logger.Warn("aoai-gateway pprof stopped", "error", err)
		}
	}, nil
}
