package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"strconv"
	"syscall"
	"time"

	"github.com/aoai-failover/failover"
	"github.com/aoai-failover/failover/gateway"
)

// The processes the driver starts: the fake region, the bare ReverseProxy and the gateway.

// serve answers with h on a loopback port, which it prints first, until the process is ended. The gateway is
// served through its Listener, as cmd/aoai-gateway serves it.
func serve(h http.Handler) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	fmt.Println("http://" + ln.Addr().String())
	if g, ok := h.(*gateway.Gateway); ok {
		ln = g.Listener(ln)
	}
	return (&http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}).Serve(ln)
}

// serveProxy serves h, and writes a heap profile to the file named in LEANBENCH_HEAP on SIGUSR1.
func serveProxy(h http.Handler) error {
	if os.Getenv("LEANBENCH_HEAP") == "" {
		return serve(h)
	}
	runtime.MemProfileRate = 1024 // a profile of what each stream holds, not a sample of the largest
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGUSR1)
	go func() {
		for range signals {
			var m runtime.MemStats
			runtime.ReadMemStats(&m)
			log.Printf("at full load: %d goroutines; heap in use %d KiB, stacks %d KiB, heap idle %d KiB (released %d KiB), sys %d KiB",
				runtime.NumGoroutine(), m.HeapInuse>>10, m.StackInuse>>10, m.HeapIdle>>10, m.HeapReleased>>10, m.Sys>>10)
			runtime.GC() // the profile is of the last collection's heap: that of now
			if f, err := os.Create(os.Getenv("LEANBENCH_HEAP")); err == nil {
				_ = pprof.Lookup("heap").WriteTo(f, 0)
				f.Close()
			}
		}
	}()
	return serve(h)
}

// bareProxy is the floor for a proxy built on net/http: ReverseProxy, with the failover client's connection pool
// settings and nothing else. It flushes event streams as they come, on its own. The request body is read first,
// as the gateway reads it: streamed through, net/http closes it when the answer's headers go out, and the
// Transport's last read of it then fails and drops the connection to the region, cutting the stream
// (golang/go#40747).
func bareProxy(upstream string) http.Handler {
	target, _ := url.Parse(upstream)
	pool := http.DefaultTransport.(*http.Transport).Clone()
	pool.MaxIdleConns, pool.MaxIdleConnsPerHost = 256, 64
	proxy := &httputil.ReverseProxy{Transport: pool, Rewrite: func(r *httputil.ProxyRequest) { r.SetURL(target) }}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r.Body, r.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
		proxy.ServeHTTP(w, r)
	})
}

func gatewayProxy(upstream string) (http.Handler, error) {
	client, err := failover.New([]failover.Region{{Name: "local", Endpoint: upstream, APIKey: "region-key",
		APIVersion: "2024-10-21"}}, failover.WithMaxWait(0))
	if err != nil {
		return nil, err
	}
	// In flight, a stream counts for its whole life, and holds its connection: the default limits (1024 requests,
	// 4096 connections) would shed or queue most of 5 000 streams, and this measures what each costs, not the
	// limits.
	return gateway.New(client, gateway.Config{Keys: []string{benchKey}, MaxInFlight: 1 << 20, MaxConnections: 1 << 20})
}

// answer is a chat completion like Azure's.
var answer = []byte(`{"id":"chatcmpl-1","object":"chat.completion","created":1795000000,"model":"gpt-4o","system_fingerprint":"fp_1",` +
	`"choices":[{"index":0,"finish_reason":"stop","logprobs":null,"message":{"role":"assistant","content":"Hello from the region."}}],` +
	`"usage":{"prompt_tokens":9,"completion_tokens":4,"total_tokens":13}}`)

// chunk is one chunk of a streamed chat completion, about 200 bytes.
const chunk = `data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1795000000,"model":"gpt-4o",` +
	`"choices":[{"index":0,"delta":{"content":"word "},"finish_reason":null}]}` + "\n\n"

// regionHandler answers chat completions: a fixed answer at once, or, for "stream": true, max_tokens chunks one
// -every apart (the request's "every_ms") and "data: [DONE]".
func regionHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Stream    bool `json:"stream"`
			MaxTokens int  `json:"max_tokens"`
			EveryMS   int  `json:"every_ms"`
		}
		data, _ := io.ReadAll(r.Body)
		_ = json.Unmarshal(data, &req)
		if !req.Stream {
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Content-Length", strconv.Itoa(len(answer)))
			_, _ = w.Write(answer)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		rc := http.NewResponseController(w)
		tick := time.NewTicker(time.Duration(max(1, req.EveryMS)) * time.Millisecond)
		defer tick.Stop()
		for i := range req.MaxTokens {
			if i > 0 {
				select {
				case <-tick.C:
				case <-r.Context().Done():
					return
				}
			}
			_, _ = io.WriteString(w, chunk)
			_ = rc.Flush()
		}
		_, _ = io.WriteString(w, "data: [DONE]\n\n")
	})
}
