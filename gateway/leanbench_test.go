package gateway_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"
)

// streamChunk is one chat completion chunk as Azure sends it, about 200 bytes.
const streamChunk = `data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1795000000,"model":"gpt-4o",` +
	`"choices":[{"index":0,"delta":{"content":"word "},"finish_reason":null}]}` + "\n\n"

// burstRegion streams chunks chat completion chunks and [DONE] at once, flushing after each: a stream whose cost
// is the proxy's, not the wait.
func burstRegion(chunks int) *httptest.Server {
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "text/event-stream")
		rc := http.NewResponseController(w)
		for range chunks {
			_, _ = io.WriteString(w, streamChunk)
			_ = rc.Flush()
		}
		_, _ = io.WriteString(w, "data: [DONE]\n\n")
	}))
}

// BenchmarkStreamThrough passes streams of 1 and 101 chunks through the gateway and, for scale, through
// httputil.ReverseProxy; -benchmem gives the bytes each stream costs the process (caller and region included).
func BenchmarkStreamThrough(b *testing.B) {
	for _, chunks := range []int{1, 101} {
		b.Run(fmt.Sprintf("chunks=%d", chunks), func(b *testing.B) { benchmarkStreamThrough(b, chunks) })
	}
}

func benchmarkStreamThrough(b *testing.B, chunks int) {
	region := burstRegion(chunks)
	defer region.Close()
	front := benchGateway(b, region.URL, "gateway-key")
	target, _ := url.Parse(region.URL)
	plain := httptest.NewServer(&httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) { r.SetURL(target) }})
	defer plain.Close()
	body := `{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"Say hello."}]}`
	for _, p := range []struct{ name, url string }{
		{"gateway", front.URL + "/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21"},
		{"reverseproxy", plain.URL + "/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21"},
	} {
		b.Run(p.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				req, _ := http.NewRequestWithContext(context.Background(), http.MethodPost, p.url, strings.NewReader(body))
				req.Header.Set("api-key", "gateway-key")
				req.Header.Set("Content-Type", "application/json")
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				data, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil || !strings.HasSuffix(string(data), "data: [DONE]\n\n") {
					b.Fatalf("stream: %v, %q", err, data)
				}
			}
		})
	}
}
