package failover_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/aoai-failover/failover"
	"github.com/aoai-failover/failover/failovertest"
	openai "github.com/sashabaranov/go-openai"
)

// BenchmarkChatCompletion measures one chat completion through a healthy first region against the same call made
// directly with go-openai, to the same fake server, in the same run. The "ratio" sub-benchmark alternates the two
// calls so that both see the same machine state, and reports time and allocation ratios (failover / direct).
func BenchmarkChatCompletion(b *testing.B) {
	b.Run("direct", func(b *testing.B) {
		p := newBenchPair(b)
		b.ReportAllocs()
		cpu := processCPU()
		for b.Loop() {
			p.callDirect(b)
		}
		b.ReportMetric(float64(processCPU()-cpu)/float64(b.N), "cpu-ns/op")
	})
	b.Run("failover", func(b *testing.B) {
		p := newBenchPair(b)
		b.ReportAllocs()
		cpu := processCPU()
		for b.Loop() {
			p.callFailover(b)
		}
		b.ReportMetric(float64(processCPU()-cpu)/float64(b.N), "cpu-ns/op")
	})
	b.Run("ratio", func(b *testing.B) { benchRatio(b, newBenchPair(b)) })
	// With a spare region the client steers by quota: it estimates each request's tokens and keeps each answer's
	// x-ratelimit-remaining-* headers.
	b.Run("ratio-steering", func(b *testing.B) {
		spare := failovertest.NewRegion("spare")
		b.Cleanup(spare.Close)
		benchRatio(b, newBenchPairOf(b, []failover.Region{{Name: "spare", Endpoint: spare.URL, APIKey: spare.Key}}))
	})
}

// benchRatio alternates direct and failover calls of p and reports their time, CPU and allocation ratios.
func benchRatio(b *testing.B, p *benchPair) {
	{
		// The two kinds of call alternate in blocks: fine enough that the machine's drift (large on a shared
		// VM) hits both alike, coarse enough that garbage collection is charged mostly to the block whose
		// allocations triggered it, and that the order within a pair does not matter.
		const block = 50
		var wall, cpu [2]time.Duration
		kind, start, startCPU := 0, time.Now(), processCPU()
		endBlock := func() {
			wall[kind] += time.Since(start)
			cpu[kind] += processCPU() - startCPU
			kind, start, startCPU = 1-kind, time.Now(), processCPU()
		}
		for i := 0; b.Loop(); i++ {
			if i > 0 && i%block == 0 {
				endBlock()
			}
			if kind == 0 {
				p.callDirect(b)
			} else {
				p.callFailover(b)
			}
		}
		endBlock()
		b.StopTimer()
		allocsDirect := testing.AllocsPerRun(200, func() { p.callDirect(b) })
		allocsFailover := testing.AllocsPerRun(200, func() { p.callFailover(b) })
		b.ReportMetric(float64(wall[1])/float64(wall[0]), "time-ratio")
		b.ReportMetric(float64(cpu[1])/float64(cpu[0]), "cpu-ratio")
		b.ReportMetric(allocsFailover/allocsDirect, "alloc-ratio")
		b.ReportMetric(allocsDirect, "allocs-direct")
		b.ReportMetric(allocsFailover, "allocs-failover")
		b.ReportMetric(0, "ns/op")
	}
}

// BenchmarkThrottledPath measures what a 429 costs when the first k of 4 regions are rate-limited with
// retry-after: 60 and the others serve (issue 3). "recipe" is the loop callers commonly write by hand: go-openai's
// Azure client for each region in turn, moving on at a 429, remembering nothing between calls; it pays k+1 round
// trips on every call. "failover" is one failover.Client over the same regions: its first call pays k+1 as well,
// then the throttled regions rest for their Retry-After and every later call goes straight to region k.
// roundtrips/op counts the requests all four fake servers received, divided by the calls made.
func BenchmarkThrottledPath(b *testing.B) {
	const regions = 4
	for k := range regions {
		b.Run(fmt.Sprintf("k=%d", k), func(b *testing.B) {
			b.Run("recipe", func(b *testing.B) {
				servers := startThrottled(b, regions, k)
				call := newRecipeClient(b, servers).CreateChatCompletion
				runThrottled(b, servers, k, call)
			})
			b.Run("failover", func(b *testing.B) {
				servers := startThrottled(b, regions, k)
				call := newClient(b, regionsOf(servers...), failover.WithMaxWait(0)).CreateChatCompletion
				runThrottled(b, servers, k, call)
			})
		})
	}
}

// startThrottled starts n fake regions, the first k of which answer every request 429 with retry-after: 60.
func startThrottled(b *testing.B, n, k int) []*failovertest.Server {
	b.Helper()
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("region-%d", i)
	}
	servers := startRegions(b, names)
	for _, s := range servers[:k] {
		s.SetDefault(failovertest.RateLimited(time.Minute))
	}
	return servers
}

// runThrottled times call and reports the round trips it cost. Every call must be served by region k, the first
// that is not throttled.
func runThrottled(b *testing.B, servers []*failovertest.Server, k int,
	call func(context.Context, openai.ChatCompletionRequest) (openai.ChatCompletionResponse, error)) {
	b.Helper()
	req := chatRequest()
	before := make([]int, len(servers))
	for i, s := range servers {
		before[i] = s.Requests()
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := call(context.Background(), req); err != nil {
			b.Fatal(err)
		}
	}
	roundtrips := 0
	for i, s := range servers {
		n := s.Requests() - before[i]
		roundtrips += n
		if i == k && n != b.N || i > k && n != 0 {
			b.Fatalf("%s received %d requests for %d calls; every call should be served by %s", s.Name, n, b.N, servers[k].Name)
		}
	}
	b.ReportMetric(float64(roundtrips)/float64(b.N), "roundtrips/op")
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
}

// recipeClient is the failover loop many callers write by hand: a go-openai Azure client per region, tried in
// order, moving on at a 429. It remembers nothing from one call to the next.
type recipeClient struct {
	clients []*openai.Client
}

func newRecipeClient(b *testing.B, servers []*failovertest.Server) *recipeClient {
	b.Helper()
	transp := http.DefaultTransport.(*http.Transport).Clone()
	transp.MaxIdleConnsPerHost = 64 // as the failover client's own transport
	b.Cleanup(transp.CloseIdleConnections)
	httpClient := &http.Client{Transport: transp}
	r := &recipeClient{}
	for _, s := range servers {
		cfg := openai.DefaultAzureConfig(s.Key, s.URL)
		cfg.APIVersion = "2024-10-21"
		cfg.AzureModelMapperFunc = func(model string) string { return model }
		cfg.HTTPClient = httpClient
		r.clients = append(r.clients, openai.NewClientWithConfig(cfg))
	}
	return r
}

func (r *recipeClient) CreateChatCompletion(ctx context.Context, req openai.ChatCompletionRequest) (openai.ChatCompletionResponse, error) {
	var err error
	for _, c := range r.clients {
		var resp openai.ChatCompletionResponse
		resp, err = c.CreateChatCompletion(ctx, req)
		var apiErr *openai.APIError
		if err == nil || !errors.As(err, &apiErr) || apiErr.HTTPStatusCode != http.StatusTooManyRequests {
			return resp, err
		}
	}
	return openai.ChatCompletionResponse{}, err
}
