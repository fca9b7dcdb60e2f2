package main

import (
	"context"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/aoai-failover/failover"
	"github.com/aoai-failover/failover/failovertest"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
)

// BenchmarkOpenAIGoChat measures what the failover client adds to one openai-go chat completion: direct is
// openai-go straight to a fake region's v1 surface (its base URL and key), failover is the same request through
// the failover client configured with that one region on the same surface. The server is the same fake, in the
// same process, so both figures include its work; the difference is the failover client's.
//
// failover also reports failover/direct: its ns/op over the median ns/op of the direct runs made so far in this
// process. With -count, go test runs every repetition of direct before the first of failover, so each failover
// repetition is compared with all of them, not with one run that happened to be fast or slow; the figures it
// divides are the ones printed.
//
//	go test -run '^$' -bench OpenAIGoChat -benchtime 2000x -count 5
func BenchmarkOpenAIGoChat(b *testing.B) {
	srv := failovertest.NewRegion("bench", failovertest.WithoutCallLog()) // no call log: memory stays flat
	defer srv.Close()
	params := openai.ChatCompletionNewParams{
		Model: chatModel,
		Messages: []openai.ChatCompletionMessageParamUnion{
			openai.SystemMessage("You are a terse assistant."),
			openai.UserMessage("Say hello in five words."),
		},
	}

	// direct gets a transport like the failover client's own (http.DefaultTransport's settings), so that only
	// the failover layer differs.
	transport := http.DefaultTransport.(*http.Transport).Clone()
	defer transport.CloseIdleConnections()
	direct := openai.NewClient(option.WithBaseURL(srv.V1URL+"/"), option.WithAPIKey(srv.Key),
		option.WithHTTPClient(&http.Client{Transport: transport}))

	fc, err := failover.New([]failover.Region{{Name: srv.Name, Endpoint: srv.V1URL, APIKey: srv.Key}})
	if err != nil {
		b.Fatal(err)
	}
	defer fc.Close()
	viaFailover := openai.NewClient(option.WithHTTPClient(&http.Client{Transport: fc}), option.WithAPIKey("unused"))

	b.Run("paired", func(b *testing.B) {
		pairs(b, direct, viaFailover, params)
	})
	b.Run("direct", func(b *testing.B) {
		directRuns = append(directRuns, measure(b, direct, params))
	})
	b.Run("failover", func(b *testing.B) {
		nsPerOp := measure(b, viaFailover, params)
		if len(directRuns) > 0 {
			b.ReportMetric(nsPerOp/median(directRuns), "failover/direct")
		}
	})
}

// pairs makes one call through each client per iteration, in the order ABBA (direct first on even iterations,
// failover first on odd ones), timing each call, so that drift over the run (the heap growing, the machine
// getting busier) and any advantage of going first or second fall on both alike. It reports each client's mean
// ns per call and their ratio, failover/direct: the figure BENCHMARKS.md records.
func pairs(b *testing.B, direct, viaFailover openai.Client, params openai.ChatCompletionNewParams) {
	call(b, direct, params)
	call(b, viaFailover, params)
	var spent [2]time.Duration
	clients := [2]openai.Client{direct, viaFailover}
	i := 0
	for b.Loop() {
		for k := range 2 {
			c := (i + k) % 2 // 0, 1 on even iterations; 1, 0 on odd ones
			start := time.Now()
			call(b, clients[c], params)
			spent[c] += time.Since(start)
		}
		i++
	}
	n := float64(b.N)
	b.ReportMetric(float64(spent[0].Nanoseconds())/n, "direct-ns/call")
	b.ReportMetric(float64(spent[1].Nanoseconds())/n, "failover-ns/call")
	b.ReportMetric(float64(spent[1])/float64(spent[0]), "failover/direct")
}

// directRuns are the ns/op of every run of BenchmarkOpenAIGoChat/direct in this process, for failover/direct.
var directRuns []float64

// measure makes chat completions with client for the benchmark's iterations, after one call that opens the
// connection (b.Loop starts the timer after it), and returns the ns/op the benchmark reports. b.Loop calls the
// benchmark function once per run, so each run returns one figure.
func measure(b *testing.B, client openai.Client, params openai.ChatCompletionNewParams) (nsPerOp float64) {
	b.ReportAllocs()
	call(b, client, params)
	for b.Loop() {
		call(b, client, params)
	}
	return float64(b.Elapsed().Nanoseconds()) / float64(b.N)
}

// call makes one chat completion with client.
func call(b *testing.B, client openai.Client, params openai.ChatCompletionNewParams) {
	if _, err := client.Chat.Completions.New(context.Background(), params); err != nil {
		b.Fatal(err)
	}
}

// median is the middle value of xs (the mean of the two middle ones for an even count).
func median(xs []float64) float64 {
	s := slices.Sorted(slices.Values(xs))
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
