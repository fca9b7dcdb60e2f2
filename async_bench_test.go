package failover_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aoai-failover/failover"
	"github.com/aoai-failover/failover/failovertest"
	openai "github.com/sashabaranov/go-openai"
)

// fanOutKinds are the three ways BenchmarkAsyncFanOut sends the same conversations, in the order of its
// accumulators.
var fanOutKinds = [...]string{"direct", "batch", "async"}

// BenchmarkAsyncFanOut measures fanning n conversations out at concurrency c (issue 7), through:
//
//   - direct: go-openai's Azure client, called from c worker goroutines that take the next conversation in turn
//     (the scheme ChatCompletionBatch uses);
//   - batch: failover.Client.ChatCompletionBatch(ctx, conversations, c);
//   - async: failover.Client.ChatCompletionAsync for each conversation, at most c in flight: a semaphore taken
//     before each call, and a goroutine per conversation that waits for its result and gives the slot back;
//
// all against the same fake region on loopback, which answers at once (latency=0) or after a fixed 20 ms
// (latency=20ms), closer to a real model, which is slower still. Each iteration sends one fan-out of each kind,
// starting with a different kind each time: a whole fan-out is the block, so that the three see the same machine
// state and no kind always follows another. The benchmark reports each kind's requests per second, and the time
// and process CPU per fan-out of batch and async against direct (batch-time-ratio, async-cpu-ratio, ...).
// Every conversation must get an answer.
func BenchmarkAsyncFanOut(b *testing.B) {
	cases := []struct {
		latency time.Duration
		n, c    int
	}{
		{0, 64, 8}, {0, 64, 64}, {0, 512, 8}, {0, 512, 64},
		// 512 conversations 8 at a time take 64 round trips of 20 ms, 1.3 s a fan-out: too slow for the CI's
		// -benchtime 1x, and it says nothing 64 at 8 does not.
		{20 * time.Millisecond, 64, 8}, {20 * time.Millisecond, 64, 64}, {20 * time.Millisecond, 512, 64},
	}
	for _, tc := range cases {
		name := fmt.Sprintf("latency=%v/n=%d/c=%d", tc.latency, tc.n, tc.c)
		if tc.latency == 0 {
			name = fmt.Sprintf("latency=0/n=%d/c=%d", tc.n, tc.c)
		}
		b.Run(name, func(b *testing.B) {
			runFanOut(b, tc.latency, tc.n, tc.c)
		})
	}
}

func runFanOut(b *testing.B, latency time.Duration, n, c int) {
	p := newBenchPair(b)
	if latency > 0 {
		p.region.SetDefault(failovertest.Slow(latency, failovertest.Reply{}))
	}
	// newBenchPair's failover client has no model, which ChatCompletionBatch and ChatCompletionAsync need; this
	// one has, over the same region, with the library's own transport.
	client := newClient(b, regionsOf(p.region))
	convs := conversations(n)
	ctx := b.Context()
	fanOut := [len(fanOutKinds)]func([][]openai.ChatCompletionMessage) []failover.Result{
		func(convs [][]openai.ChatCompletionMessage) []failover.Result {
			return fanOutDirect(ctx, p, convs, c)
		},
		func(convs [][]openai.ChatCompletionMessage) []failover.Result {
			return client.ChatCompletionBatch(ctx, convs, c)
		},
		func(convs [][]openai.ChatCompletionMessage) []failover.Result {
			return fanOutAsync(ctx, client, convs, c)
		},
	}
	// One untimed fan-out of c conversations each opens the c connections the timed ones reuse.
	for k, f := range fanOut {
		checkFanOut(b, fanOutKinds[k], f(conversations(c)))
	}

	var wall, cpu [len(fanOutKinds)]time.Duration
	rounds := 0
	for b.Loop() {
		for j := range fanOut {
			k := (rounds + j) % len(fanOut)
			start, startCPU := time.Now(), processCPU()
			results := fanOut[k](convs)
			wall[k] += time.Since(start)
			cpu[k] += processCPU() - startCPU
			checkFanOut(b, fanOutKinds[k], results)
		}
		rounds++
	}
	for k, kind := range fanOutKinds {
		b.ReportMetric(float64(rounds*n)/wall[k].Seconds(), kind+"-req/s")
	}
	for k, kind := range fanOutKinds[1:] {
		b.ReportMetric(float64(wall[k+1])/float64(wall[0]), kind+"-time-ratio")
		b.ReportMetric(float64(cpu[k+1])/float64(cpu[0]), kind+"-cpu-ratio")
	}
	b.ReportMetric(0, "ns/op") // an iteration is three fan-outs: read the figures above
}

// fanOutDirect sends each conversation with go-openai's own client, from c workers taking the next conversation
// in turn, and returns what ChatCompletionBatch would.
func fanOutDirect(ctx context.Context, p *benchPair, convs [][]openai.ChatCompletionMessage, c int) []failover.Result {
	results := make([]failover.Result, len(convs))
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(c, len(convs)) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= len(convs) {
					return
				}
				resp, err := p.direct.CreateChatCompletion(ctx, openai.ChatCompletionRequest{Model: p.req.Model, Messages: convs[i]})
				switch {
				case err != nil:
					results[i] = failover.Result{Err: err}
				case len(resp.Choices) == 0:
					results[i] = failover.Result{Err: errors.New("the answer has no choices")}
				default:
					results[i] = failover.Result{Content: resp.Choices[0].Message.Content, Response: resp}
				}
			}
		})
	}
	wg.Wait()
	return results
}

// fanOutAsync starts ChatCompletionAsync for each conversation once one of c slots is free; a goroutine per
// conversation waits for its result and frees the slot.
func fanOutAsync(ctx context.Context, client *failover.Client, convs [][]openai.ChatCompletionMessage, c int) []failover.Result {
	results := make([]failover.Result, len(convs))
	slots := make(chan struct{}, c)
	var wg sync.WaitGroup
	for i, conv := range convs {
		slots <- struct{}{}
		result := client.ChatCompletionAsync(ctx, conv)
		wg.Go(func() {
			results[i] = <-result
			<-slots
		})
	}
	wg.Wait()
	return results
}

// checkFanOut fails the benchmark unless every conversation got an answer with content.
func checkFanOut(b *testing.B, kind string, results []failover.Result) {
	b.Helper()
	for i, r := range results {
		if r.Err != nil {
			b.Fatalf("%s: conversation %d of %d: %v", kind, i, len(results), r.Err)
		}
		if r.Content == "" {
			b.Fatalf("%s: conversation %d of %d: no content", kind, i, len(results))
		}
	}
}
