package failover_test

import (
	"context"
	"fmt"
	"hash/fnv"
	"net/http"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/aoai-failover/failover"
	"github.com/aoai-failover/failover/failovertest"
	openai "github.com/sashabaranov/go-openai"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// tail is a latency profile with a slow tail, as a loaded region shows: most answers take about fast, a share of
// them take slow.
type tail struct {
	fast, jitter, slow time.Duration
	slowShare          float64
}

// replier answers as the profile says. Whether an answer is slow is drawn from the request's body (which holds
// its number) and the region's name: a request is slow or fast the same way every run, and its hedge, sent to
// another region, draws on its own.
func (p tail) replier(region string) func(failovertest.Call) failovertest.Reply {
	return func(call failovertest.Call) failovertest.Reply {
		h := fnv.New64a()
		h.Write([]byte(region))
		h.Write(call.Body)
		draw := h.Sum64()
		if float64(draw%10000)/10000 < p.slowShare {
			return failovertest.Reply{Delay: p.slow}
		}
		jitter := time.Duration(0)
		if p.jitter > 0 {
			jitter = time.Duration((draw >> 16) % uint64(p.jitter))
		}
		return failovertest.Reply{Delay: p.fast + jitter}
	}
}

// tailRun is what one way of calling made of a run: each request's latency and the calls the regions received.
type tailRun struct {
	name      string
	latencies []time.Duration
	calls     int
}

func (r *tailRun) percentile(p float64) time.Duration {
	s := slices.Clone(r.latencies)
	slices.Sort(s)
	return s[min(int(p*float64(len(s))), len(s)-1)]
}

// extra is the share of calls beyond one per request.
func (r *tailRun) extra() float64 {
	return float64(r.calls)/float64(len(r.latencies)) - 1
}

func (r *tailRun) String() string {
	return fmt.Sprintf("%-8s p50 %7s  p99 %7s  calls/request %.3f", r.name, r.percentile(0.5).Round(time.Millisecond/10),
		r.percentile(0.99).Round(time.Millisecond/10), 1+r.extra())
}

// tailRequest is request number i: its number is in its message, so that the regions draw its latency from it.
func tailRequest(i int) openai.ChatCompletionRequest {
	return openai.ChatCompletionRequest{Model: "gpt-4o", Messages: []openai.ChatCompletionMessage{
		{Role: openai.ChatMessageRoleUser, Content: "request " + strconv.Itoa(i)}}}
}

// runTail sends requests 0 to n-1 through call from workers goroutines, and returns their latencies.
func runTail(t testing.TB, n, workers int, call func(openai.ChatCompletionRequest) error) []time.Duration {
	latencies := make([]time.Duration, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	var failures atomic.Int64
	for range workers {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				start := time.Now()
				if err := call(tailRequest(i)); err != nil {
					failures.Add(1)
					continue
				}
				latencies[i] = time.Since(start)
			}
		})
	}
	wg.Wait()
	require.Zero(t, failures.Load(), "every request must be served")
	return latencies
}

// tailModes are the ways a tail run calls: without hedging, with a fixed delay, with a learned one.
var tailModes = []struct {
	name    string
	hedging *failover.Hedging
}{
	{"off", nil},
	{"fixed", &failover.Hedging{Delay: 150 * time.Millisecond}},
	{"learned", &failover.Hedging{Percentile: 0.95}},
}

// TestHedgingCutsTheTail is the measurement of issue 8's target for hedging, on a fake clock: two regions answer
// 97% of requests in 40–60 ms and 3% in 3 s. Without hedging, the 99th percentile is the slow answer; with it, a
// slow request goes to the second region too after the hedge delay, and the first answer wins. Target: p99 cut at
// least 3x for at most 10% extra calls, with a fixed delay and with one learned from the 95th percentile. The
// table is printed with -v, or written to FAILOVER_TAIL_REPORT.
func TestHedgingCutsTheTail(t *testing.T) {
	profile := tail{fast: 40 * time.Millisecond, jitter: 20 * time.Millisecond, slow: 3 * time.Second, slowShare: 0.03}
	const requests, workers = 1000, 20
	var runs []*tailRun
	synctest.Test(t, func(t *testing.T) {
		network := failovertest.NewNetwork()
		defer network.Close()
		servers := make([]*failovertest.Server, 2)
		for i, name := range []string{"eastus", "westus"} {
			servers[i] = failovertest.NewRegion(name, failovertest.OnNetwork(network), failovertest.WithoutCallLog())
			servers[i].SetReplier(profile.replier(name))
			defer servers[i].Close()
		}
		for _, mode := range tailModes {
			opts := []failover.Option{failover.WithHTTPClient(network.Client())}
			if mode.hedging != nil {
				opts = append(opts, failover.WithHedging(*mode.hedging))
			}
			client := newClient(t, regionsOf(servers...), opts...)
			before := servers[0].Requests() + servers[1].Requests()
			run := &tailRun{name: mode.name}
			run.latencies = runTail(t, requests, workers, func(req openai.ChatCompletionRequest) error {
				_, err := client.CreateChatCompletion(context.Background(), req)
				return err
			})
			run.calls = servers[0].Requests() + servers[1].Requests() - before
			runs = append(runs, run)
			client.Close()
		}
	})
	report := "hedging, 1000 requests, 20 at a time; 97% answered in 40-60 ms, 3% in 3 s (fake clock)\n"
	for _, r := range runs {
		report += r.String() + "\n"
	}
	t.Log("\n" + report)
	if path := os.Getenv("FAILOVER_TAIL_REPORT"); path != "" {
		require.NoError(t, os.WriteFile(path, []byte(report), 0o644))
	}
	off := runs[0]
	assert.Equal(t, profile.slow, off.percentile(0.99).Truncate(profile.slow), "without hedging, the 99th percentile is a slow answer")
	assert.Zero(t, off.extra(), "without hedging, one call per request")
	for _, r := range runs[1:] {
		assert.GreaterOrEqual(t, float64(off.percentile(0.99))/float64(r.percentile(0.99)), 3.0, "%s: p99 cut at least 3x", r.name)
		assert.LessOrEqual(t, r.extra(), 0.10, "%s: at most 10%% extra calls", r.name)
		assert.Greater(t, r.extra(), 0.0, "%s: some requests were hedged", r.name)
		assert.LessOrEqual(t, r.percentile(0.5), off.percentile(0.5)+time.Millisecond, "%s: the median is not made worse", r.name)
	}
}

// BenchmarkHedging measures hedging in real time over loopback: two fake regions answer 97% of requests in 2–3
// ms and 3% in 100 ms. Each iteration sends one request in each of three ways, in turn: directly with go-openai
// to the first region, through a client without hedging, and through one with a fixed 10 ms hedge delay. It
// reports the median and 99th percentile of each, the p99 ratio (without hedging / with) and the extra calls
// hedging spent. Run with -benchtime 2000x or more: a 99th percentile needs a few hundred requests.
func BenchmarkHedging(b *testing.B) {
	profile := tail{fast: 2 * time.Millisecond, jitter: time.Millisecond, slow: 100 * time.Millisecond, slowShare: 0.03}
	servers := make([]*failovertest.Server, 2)
	for i, name := range []string{"eastus", "westus"} {
		servers[i] = failovertest.NewRegion(name, failovertest.WithoutCallLog())
		servers[i].SetReplier(profile.replier(name))
		b.Cleanup(servers[i].Close)
	}
	cfg := openai.DefaultAzureConfig(servers[0].Key, servers[0].URL)
	cfg.APIVersion = failover.DefaultAPIVersion
	cfg.AzureModelMapperFunc = func(model string) string { return model }
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.MaxIdleConnsPerHost = 64
	cfg.HTTPClient = &http.Client{Transport: transport}
	direct := openai.NewClientWithConfig(cfg)
	b.Cleanup(transport.CloseIdleConnections)
	off := newClient(b, regionsOf(servers...))
	on := newClient(b, regionsOf(servers...), failover.WithHedging(failover.Hedging{Delay: 10 * time.Millisecond}))

	ways := []struct {
		name string
		call func(openai.ChatCompletionRequest) error
		run  tailRun
	}{
		{name: "direct", call: func(r openai.ChatCompletionRequest) error {
			_, err := direct.CreateChatCompletion(context.Background(), r)
			return err
		}},
		{name: "off", call: func(r openai.ChatCompletionRequest) error {
			_, err := off.CreateChatCompletion(context.Background(), r)
			return err
		}},
		{name: "hedged", call: func(r openai.ChatCompletionRequest) error {
			_, err := on.CreateChatCompletion(context.Background(), r)
			return err
		}},
	}
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		for w := range ways {
			before := servers[0].Requests() + servers[1].Requests()
			start := time.Now()
			if err := ways[w].call(tailRequest(i)); err != nil {
				b.Fatal(err)
			}
			ways[w].run.latencies = append(ways[w].run.latencies, time.Since(start))
			ways[w].run.calls += servers[0].Requests() + servers[1].Requests() - before
		}
	}
	b.StopTimer()
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	for _, w := range ways {
		b.ReportMetric(ms(w.run.percentile(0.5)), "p50-ms-"+w.name)
		b.ReportMetric(ms(w.run.percentile(0.99)), "p99-ms-"+w.name)
	}
	b.ReportMetric(float64(ways[1].run.percentile(0.99))/float64(ways[2].run.percentile(0.99)), "p99-cut")
	b.ReportMetric(ways[2].run.extra(), "extra-calls")
	b.ReportMetric(0, "ns/op")
}
