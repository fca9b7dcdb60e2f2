package failover_test

import (
	"context"
	"net/http"
	"syscall"
	"testing"
	"time"

	"github.com/aoai-failover/failover"
	"github.com/aoai-failover/failover/failovertest"
	openai "github.com/sashabaranov/go-openai"
)

// benchPair is a failover client and a plain go-openai Azure client, both talking to the same healthy fake
// region, so a benchmark can measure what the failover layer adds to one call.
type benchPair struct {
	region   *failovertest.Server
	failover *failover.Client
	direct   *openai.Client
	req      openai.ChatCompletionRequest
	transp   *http.Transport
}

func newBenchPair(b *testing.B) *benchPair {
	b.Helper()
	region := failovertest.NewRegion("bench")
	c, err := failover.New([]failover.Region{{Endpoint: region.URL, APIKey: region.Key}})
	if err != nil {
		b.Fatal(err)
	}
	transp := http.DefaultTransport.(*http.Transport).Clone()
	transp.MaxIdleConnsPerHost = 64
	cfg := openai.DefaultAzureConfig(region.Key, region.URL)
	cfg.APIVersion = failover.DefaultAPIVersion
	cfg.AzureModelMapperFunc = func(model string) string { return model }
	cfg.HTTPClient = &http.Client{Transport: transp}
	p := &benchPair{region: region, failover: c, direct: openai.NewClientWithConfig(cfg), transp: transp,
		req: openai.ChatCompletionRequest{Model: "gpt-4o", Messages: []openai.ChatCompletionMessage{
			{Role: openai.ChatMessageRoleSystem, Content: "You are a terse assistant."},
			{Role: openai.ChatMessageRoleUser, Content: "Say hello in five words."},
		}}}
	b.Cleanup(func() {
		c.CloseIdleConnections()
		transp.CloseIdleConnections()
		region.Close()
	})
	return p
}

func (p *benchPair) callDirect(b *testing.B) {
	if _, err := p.direct.CreateChatCompletion(context.Background(), p.req); err != nil {
		b.Fatal(err)
	}
}

func (p *benchPair) callFailover(b *testing.B) {
	if _, err := p.failover.CreateChatCompletion(context.Background(), p.req); err != nil {
		b.Fatal(err)
	}
}

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
	b.Run("ratio", func(b *testing.B) {
		p := newBenchPair(b)
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
	})
}

// processCPU is the CPU time the process has used, user and system, in nanoseconds: client and fake server
// together. Less disturbed than wall time by how the two goroutines happen to be scheduled on 2 cores.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
