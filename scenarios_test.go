package failover_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/aoai-failover/failover"
	"github.com/aoai-failover/failover/failovertest"
	openai "github.com/sashabaranov/go-openai"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// scenario is one way a region misbehaves, played by eastus (first in order) while westus is healthy.
type scenario struct {
	name   string
	stream bool
	setup  func(east *failovertest.Server)
	// want is what the caller must get: the text, or the error's text; and the attempts, as region:outcome.
	want     string
	attempts string
	took     time.Duration
}

// TestScenarios plays the misbehaviours of shared/landscape.md's failover benchmarks against the client, in fake
// time, and checks what the caller got, the attempts each region saw and the time it took. Run with -v to print
// the table BENCHMARKS.md records.
func TestScenarios(t *testing.T) {
	scenarios := []scenario{
		{name: "429 with Retry-After", setup: func(e *failovertest.Server) { e.Script(failovertest.RateLimited(20 * time.Second)) },
			want: "Hello from westus.", attempts: "eastus:failed over 429, westus:served 200"},
		{name: "429 without Retry-After", setup: func(e *failovertest.Server) { e.Script(failovertest.RateLimited(0)) },
			want: "Hello from westus.", attempts: "eastus:failed over 429, westus:served 200"},
		{name: "500 once", setup: func(e *failovertest.Server) { e.Script(failovertest.InternalError()) },
			want: "Hello from westus.", attempts: "eastus:failed over 500, westus:served 200"},
		{name: "503 for good", setup: func(e *failovertest.Server) { e.SetDefault(failovertest.Unavailable()) },
			want: "Hello from westus.", attempts: "eastus:failed over 503, westus:served 200"},
		{name: "connection reset", setup: func(e *failovertest.Server) { e.Script(failovertest.Disconnect()) },
			want: "Hello from westus.", attempts: "eastus:failed over 0, westus:served 200"},
		{name: "no answer (cold start: the 5 min limit)", setup: func(e *failovertest.Server) { e.Script(failovertest.Hang()) },
			want: "Hello from westus.", attempts: "eastus:failed over 0, westus:served 200", took: 5 * time.Minute},
		{name: "slow first token (20 s), stream", stream: true,
			setup: func(e *failovertest.Server) { e.Script(failovertest.Reply{BodyDelay: 20 * time.Second}) },
			want:  "Hello from eastus.", attempts: "eastus:served 200", took: 20 * time.Second},
		{name: "error before content, stream", stream: true,
			setup: func(e *failovertest.Server) { e.Script(failovertest.StreamFailure(1)) },
			want:  "Hello from westus.", attempts: "eastus:failed over 200, westus:served 200"},
		{name: "cut after content, stream", stream: true,
			setup: func(e *failovertest.Server) { e.Script(failovertest.Reply{StreamCutAfter: 2}) },
			want:  "failover: stream cut", attempts: "eastus:served 200"},
		{name: "stalled after content, stream", stream: true,
			setup: func(e *failovertest.Server) { e.Script(failovertest.Reply{StreamStallAfter: 2}) },
			want:  "failover: stream stalled", attempts: "eastus:served 200", took: 30 * time.Second},
		{name: "no [DONE], stream", stream: true,
			setup: func(e *failovertest.Server) { e.Script(failovertest.Reply{NoDone: true}) },
			want:  "Hello from eastus.", attempts: "eastus:served 200"},
		{name: "content filter (400)", setup: func(e *failovertest.Server) { e.Script(failovertest.ContentFilter()) },
			want: "content management policy", attempts: "eastus:returned 400"},
	}
	var table strings.Builder
	table.WriteString("| eastus (first in order) | the caller got | attempts | time |\n|---|---|---|---|\n")
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				servers, client := bubbleFleet(t, []string{"eastus", "westus"})
				sc.setup(servers[0])
				var rec recorder
				start := time.Now()
				got, err := play(t, client, rec.context(t.Context()), sc.stream)
				took := time.Since(start)
				if err != nil {
					got = err.Error()
				}
				assert.Contains(t, got, sc.want)
				assert.Equal(t, sc.attempts, attemptsOf(rec.list()))
				assert.Equal(t, sc.took, took)
				fmt.Fprintf(&table, "| %s | %s | %s | %s |\n", sc.name, oneLineOf(got), attemptsOf(rec.list()), took)
			})
		})
	}
	t.Log("\n" + table.String())
}

// TestScenarioPrimaryDownThenBack: eastus answers 503 for 60 s, then recovers; a request every 2 s meanwhile is
// served by westus, and eastus serves again within 10 s of its recovery, each of its rests ending in one probe.
func TestScenarioPrimaryDownThenBack(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		servers, client := bubbleFleet(t, []string{"eastus", "westus"}, failover.WithQuotaSteering(false))
		east := servers[0]
		east.SetDefault(failovertest.Unavailable())
		start := time.Now()
		var back time.Duration
		for i := range 60 {
			if time.Since(start) >= 60*time.Second && back == 0 {
				east.SetDefault(failovertest.Reply{})
			}
			var rec recorder
			text, err := client.ChatCompletion(rec.context(t.Context()), hello())
			require.NoError(t, err, "request %d", i)
			if text == "Hello from eastus." && back == 0 {
				back = time.Since(start) - 60*time.Second
				break
			}
			time.Sleep(2 * time.Second) // the next caller, in fake time
		}
		require.NotZero(t, back, "eastus served again")
		assert.LessOrEqual(t, back, 10*time.Second, "back within the capped rest")
		t.Logf("eastus served again %s after it recovered; it was asked %d times in all", back, len(east.Calls()))
	})
}

func play(t *testing.T, client *failover.Client, ctx context.Context, stream bool) (string, error) {
	t.Helper()
	if !stream {
		return client.ChatCompletion(ctx, hello())
	}
	s, err := client.CreateChatCompletionStream(ctx, openai.ChatCompletionRequest{Messages: hello()})
	if err != nil {
		return "", err
	}
	defer s.Close()
	var text strings.Builder
	for range 1000 {
		chunk, err := s.Recv()
		if errors.Is(err, io.EOF) {
			return text.String(), nil
		}
		if err != nil {
			return text.String(), err
		}
		if len(chunk.Choices) > 0 {
			text.WriteString(chunk.Choices[0].Delta.Content)
		}
	}
	return text.String(), errors.New("stream did not end")
}

// attemptsOf is the attempts as region:outcome status, in order.
func attemptsOf(attempts []failover.Attempt) string {
	var parts []string
	for _, a := range attempts {
		parts = append(parts, fmt.Sprintf("%s:%s %d", a.Region, a.Outcome, a.Status))
	}
	return strings.Join(parts, ", ")
}

func oneLineOf(s string) string {
	if len(s) > 70 {
		s = s[:70] + "…"
	}
	return strings.ReplaceAll(s, "|", "/")
}
