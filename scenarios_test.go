package failover_test

import (
	"context"
	"fmt"
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

// outcome is what the caller of one misbehaviour must get: the text, or the error's text; the attempts, as
// region:outcome status; and the time it took.
type outcome struct {
	got      string
	attempts string
	took     time.Duration
}

// clientOutcomes is what the client does with each of failovertest.Misbehaviours, played by eastus (first in
// order) while westus is healthy, with default options.
var clientOutcomes = map[string]outcome{
	"429 with Retry-After":    {"Hello from westus.", "eastus:failed over 429, westus:served 200", 0},
	"429 without Retry-After": {"Hello from westus.", "eastus:failed over 429, westus:served 200", 0},
	"500 once":                {"Hello from westus.", "eastus:failed over 500, westus:served 200", 0},
	"503 for good":            {"Hello from westus.", "eastus:failed over 503, westus:served 200", 0},
	"connection reset":        {"Hello from westus.", "eastus:failed over 0, westus:served 200", 0},
	// A non-streaming call's silence is a slow answer until the region's history says otherwise: the cold start.
	"no answer":                              {"Hello from westus.", "eastus:failed over 0, westus:served 200", 5 * time.Minute},
	"no answer, stream":                      {"Hello from westus.", "eastus:failed over 0, westus:served 200", 10 * time.Second},
	"slow reasoning model (90 s)":            {"Hello from eastus.", "eastus:served 200", 90 * time.Second},
	"slow first token (20 s), stream":        {"Hello from eastus.", "eastus:served 200", 20 * time.Second},
	"error before content, stream":           {"Hello from westus.", "eastus:failed over 200, westus:served 200", 0},
	"cut after content, stream":              {"failover: stream cut", "eastus:served 200", 0},
	"stalled after content, stream":          {"failover: stream stalled", "eastus:served 200", 30 * time.Second},
	"malformed chunk before content, stream": {"Hello from westus.", "eastus:failed over 200, westus:served 200", 0},
	"malformed chunk after content, stream":  {"failover: stream cut", "eastus:served 200", 0},
	"no [DONE], stream":                      {"Hello from eastus.", "eastus:served 200", 0},
	"content filter (400)":                   {"content management policy", "eastus:returned 400", 0},
	"context length exceeded (400)":          {"maximum context length", "eastus:returned 400", 0},
}

// TestScenarios plays failovertest.Misbehaviours (the failover benchmarks' scenarios of shared/landscape.md)
// against the client, in fake time, and checks what the caller got, the attempts each region saw and the time
// it took. Run with -v to print the table BENCHMARKS.md records.
func TestScenarios(t *testing.T) {
	var table strings.Builder
	table.WriteString("| eastus (first in order) | the caller got | attempts | time |\n|---|---|---|---|\n")
	for _, m := range failovertest.Misbehaviours() {
		want, ok := clientOutcomes[m.Name]
		require.True(t, ok, "no outcome for %q", m.Name)
		t.Run(m.Name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				servers, client := bubbleFleet(t, []string{"eastus", "westus"})
				m.Play(servers[0])
				var rec recorder
				start := time.Now()
				got, err := play(t, client, rec.context(t.Context()), m.Stream)
				took := time.Since(start)
				if err != nil {
					got = err.Error()
				}
				assert.Contains(t, got, want.got)
				assert.Equal(t, want.attempts, attemptsOf(rec.list()))
				assert.Equal(t, want.took, took)
				fmt.Fprintf(&table, "| %s | %s | %s | %s |\n", m.Name, oneLineOf(got), attemptsOf(rec.list()), took)
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
		back, recovered, err := failovertest.Outage(east, func() (string, error) { return client.ChatCompletion(t.Context(), hello()) })
		require.NoError(t, err)
		require.True(t, recovered, "eastus served again")
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
	return failovertest.ReadStream(s)
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
