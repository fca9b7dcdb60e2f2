package gateway_test

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aoai-failover/failover"
	"github.com/aoai-failover/failover/gateway"
	openai "github.com/sashabaranov/go-openai"
)

// loadTime is how long each phase of BenchmarkGatewayLoad sends requests. The default keeps .ci/run's single pass
// short; BENCHMARKS.md's figures use -args -load 2s.
var loadTime = flag.Duration("load", 200*time.Millisecond, "BenchmarkGatewayLoad: duration of each direct or gateway phase")

// leanRegion answers every chat completion like Azure, with a fixed body, after latency: a fake that costs as
// little as possible, so that the benchmark measures the gateway rather than the fake.
func leanRegion(latency time.Duration) *httptest.Server {
	answer := []byte(`{"id":"chatcmpl-1","object":"chat.completion","created":1795000000,"model":"gpt-4o","system_fingerprint":"fp_1",` +
		`"choices":[{"index":0,"finish_reason":"stop","logprobs":null,"message":{"role":"assistant","content":"Hello from eastus."}}],` +
		`"usage":{"prompt_tokens":9,"completion_tokens":4,"total_tokens":13}}`)
	length := strconv.Itoa(len(answer))
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		if latency > 0 {
			t := time.NewTimer(latency)
			select {
			case <-t.C:
			case <-r.Context().Done():
				t.Stop()
				return
			}
		}
		h := w.Header()
		h["Content-Type"] = []string{"application/json"}
		h["Content-Length"] = []string{length}
		h["Apim-Request-Id"] = []string{"00000000-0000-4000-8000-000000000001"}
		h["X-Ratelimit-Remaining-Requests"] = []string{"99"}
		h["X-Ratelimit-Remaining-Tokens"] = []string{"99000"}
		_, _ = w.Write(answer)
	}))
}

// callerClient is a go-openai client in Azure mode with a connection pool big enough for every concurrent caller.
func callerClient(url string) *openai.Client {
	cfg := openai.DefaultAzureConfig("region-or-gateway-key", url)
	cfg.AzureModelMapperFunc = func(model string) string { return model }
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.MaxIdleConns, transport.MaxIdleConnsPerHost = 512, 512
	cfg.HTTPClient = &http.Client{Transport: transport}
	return openai.NewClientWithConfig(cfg)
}

// BenchmarkGatewayLoad compares requests per second and latency percentiles of calls through the gateway with
// calls straight to the fake region it fronts, at 1, 16 and 128 concurrent callers, with an instant region (the
// gateway's cost laid bare) and with regions that take 20 ms and 200 ms (fast model answers). A third phase sends
// through net/http/httputil's ReverseProxy, for scale: what any proxy built on net/http costs. The phases take
// turns, three rounds each, so that all see the same machine. Everything runs in one process on loopback: callers,
// gateway and region share the CPUs.
func BenchmarkGatewayLoad(b *testing.B) {
	for _, latency := range []time.Duration{0, 20 * time.Millisecond, 200 * time.Millisecond} {
		for _, callers := range []int{1, 16, 128} {
			b.Run(fmt.Sprintf("region=%s/callers=%d", latency, callers), func(b *testing.B) {
				region := leanRegion(latency)
				defer region.Close()
				front := benchGateway(b, region.URL, "region-or-gateway-key")

				// The floor for any proxy written with net/http: the standard library's reverse proxy, with no
				// failover, no checks and no metrics.
				target, _ := url.Parse(region.URL)
				pool := http.DefaultTransport.(*http.Transport).Clone()
				pool.MaxIdleConns, pool.MaxIdleConnsPerHost = 512, 512 // as many connections as callers, like the gateway's
				plain := httptest.NewServer(&httputil.ReverseProxy{Transport: pool,
					Rewrite: func(r *httputil.ProxyRequest) { r.SetURL(target) }})
				defer plain.Close()

				direct, through, proxied := callerClient(region.URL), callerClient(front.URL), callerClient(plain.URL)
				var d, g, p loadResult
				phases := []func(){
					func() { d.add(load(b, direct, callers)) },
					func() { g.add(load(b, through, callers)) },
					func() { p.add(load(b, proxied, callers)) },
				}
				for round := range 3 { // each phase first once, so that none always follows the same one
					for i := range phases {
						phases[(round+i)%len(phases)]()
					}
				}
				b.ReportMetric(d.rps(), "direct-req/s")
				b.ReportMetric(g.rps(), "gateway-req/s")
				b.ReportMetric(g.rps()/d.rps(), "throughput-ratio")
				b.ReportMetric(micros(d.percentile(50)), "direct-p50-µs")
				b.ReportMetric(micros(g.percentile(50)), "gateway-p50-µs")
				b.ReportMetric(micros(g.percentile(50)-d.percentile(50)), "added-p50-µs")
				b.ReportMetric(micros(d.percentile(99)), "direct-p99-µs")
				b.ReportMetric(micros(g.percentile(99)), "gateway-p99-µs")
				b.ReportMetric(micros(g.cpuPerRequest()-d.cpuPerRequest()), "added-cpu-µs/req")
				b.ReportMetric(p.rps()/d.rps(), "reverseproxy-throughput-ratio")
				b.ReportMetric(micros(p.percentile(50)-d.percentile(50)), "reverseproxy-added-p50-µs")
				b.ReportMetric(micros(p.cpuPerRequest()-d.cpuPerRequest()), "reverseproxy-added-cpu-µs/req")
				b.ReportMetric(0, "ns/op") // b.N is not what is measured here
			})
		}
	}
}

func micros(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

type loadResult struct {
	elapsed   time.Duration
	cpu       time.Duration // the process's CPU time: caller, region and, through the gateway, the gateway
	latencies []time.Duration
}

func (r *loadResult) add(o loadResult) {
	r.elapsed += o.elapsed
	r.cpu += o.cpu
	r.latencies = append(r.latencies, o.latencies...)
}

func (r *loadResult) rps() float64 { return float64(len(r.latencies)) / r.elapsed.Seconds() }

func (r *loadResult) cpuPerRequest() time.Duration {
	return r.cpu / time.Duration(max(1, len(r.latencies)))
}

func (r *loadResult) percentile(p int) time.Duration {
	if len(r.latencies) == 0 {
		return 0
	}
	s := slices.Clone(r.latencies)
	slices.Sort(s)
	return s[min(len(s)-1, len(s)*p/100)]
}

// load sends chat completions from callers goroutines for loadTime and returns each call's latency.
func load(b *testing.B, api *openai.Client, callers int) loadResult {
	req := openai.ChatCompletionRequest{Model: "gpt-4o",
		Messages: []openai.ChatCompletionMessage{{Role: openai.ChatMessageRoleUser, Content: "Say hello."}}}
	ctx, cancel := context.WithTimeout(context.Background(), *loadTime)
	defer cancel()
	var mu sync.Mutex
	var all []time.Duration
	var failed error
	var wg sync.WaitGroup
	start, cpu := time.Now(), processCPU()
	for range callers {
		wg.Go(func() {
			var mine []time.Duration
			for ctx.Err() == nil {
				t0 := time.Now()
				_, err := api.CreateChatCompletion(context.Background(), req)
				if err != nil {
					mu.Lock()
					failed = err
					mu.Unlock()
					return
				}
				mine = append(mine, time.Since(t0))
			}
			mu.Lock()
			all = append(all, mine...)
			mu.Unlock()
		})
	}
	wg.Wait()
	if failed != nil {
		b.Fatal(failed)
	}
	return loadResult{elapsed: time.Since(start), cpu: processCPU() - cpu, latencies: all}
}

// processCPU is the CPU time (user and system) the process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchGateway serves a gateway with key in front of one region at regionURL, for the length of the benchmark.
func benchGateway(b *testing.B, regionURL, key string) *httptest.Server {
	b.Helper()
	client, err := failover.New([]failover.Region{{Name: "eastus", Endpoint: regionURL, APIKey: "region-key"}},
		failover.WithMaxWait(0))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(client.CloseIdleConnections)
	gw, err := gateway.New(client, gateway.Config{Keys: []string{key}})
	if err != nil {
		b.Fatal(err)
	}
	front := httptest.NewServer(gw)
	b.Cleanup(front.Close)
	return front
}
