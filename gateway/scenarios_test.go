package gateway_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/aoai-failover/failover/failovertest"
	"github.com/aoai-failover/failover/gateway"
	openai "github.com/sashabaranov/go-openai"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// outcome is what a caller of the gateway must get for one misbehaviour: the text, or the error's text; the
// calls each region saw (eastus, westus); and the time it took.
type outcome struct {
	got   string
	calls [2]int
	took  time.Duration
}

// gatewayOutcomes is what a go-openai caller of the gateway gets for each of failovertest.Misbehaviours, played
// by eastus (first in order) while westus is healthy, with default options.
var gatewayOutcomes = map[string]outcome{
	"429 with Retry-After":                   {"Hello from westus.", [2]int{1, 1}, 0},
	"429 without Retry-After":                {"Hello from westus.", [2]int{1, 1}, 0},
	"500 once":                               {"Hello from westus.", [2]int{1, 1}, 0},
	"503 for good":                           {"Hello from westus.", [2]int{1, 1}, 0},
	"connection reset":                       {"Hello from westus.", [2]int{1, 1}, 0},
	"no answer":                              {"Hello from westus.", [2]int{1, 1}, 5 * time.Minute},
	"no answer, stream":                      {"Hello from westus.", [2]int{1, 1}, 10 * time.Second},
	"slow reasoning model (90 s)":            {"Hello from eastus.", [2]int{1, 0}, 90 * time.Second},
	"slow first token (20 s), stream":        {"Hello from eastus.", [2]int{1, 0}, 20 * time.Second},
	"error before content, stream":           {"Hello from westus.", [2]int{1, 1}, 0},
	"cut after content, stream":              {"stream cut", [2]int{1, 0}, 0},
	"stalled after content, stream":          {"stream stalled", [2]int{1, 0}, 30 * time.Second},
	"malformed chunk before content, stream": {"Hello from westus.", [2]int{1, 1}, 0},
	"malformed chunk after content, stream":  {"stream cut", [2]int{1, 0}, 0},
	"no [DONE], stream":                      {"Hello from eastus.", [2]int{1, 0}, 0},
	"content filter (400)":                   {"content management policy", [2]int{1, 0}, 0},
	"context length exceeded (400)":          {"maximum context length", [2]int{1, 0}, 0},
}

// TestScenarios plays failovertest.Misbehaviours through the gateway, in fake time, with go-openai as the
// caller: what it got, the calls each region saw and the time taken. Run with -v to print the table
// BENCHMARKS.md records.
func TestScenarios(t *testing.T) {
	var table strings.Builder
	table.WriteString("| eastus (first in order) | the caller got | calls eastus, westus | time |\n|---|---|---|---|\n")
	for _, m := range failovertest.Misbehaviours() {
		want, ok := gatewayOutcomes[m.Name]
		require.True(t, ok, "no outcome for %q", m.Name)
		t.Run(m.Name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				servers, api := bubbleGateway(t, gateway.Config{})
				m.Play(servers[0])
				start := time.Now()
				got, err := playThrough(t.Context(), api, m.Stream)
				took := time.Since(start)
				if err != nil {
					got = err.Error()
				}
				calls := [2]int{len(servers[0].Calls()), len(servers[1].Calls())}
				assert.Contains(t, got, want.got)
				assert.Equal(t, want.calls, calls)
				assert.Equal(t, want.took, took)
				if len(got) > 70 {
					got = got[:70] + "…"
				}
				fmt.Fprintf(&table, "| %s | %s | %d, %d | %s |\n", m.Name, strings.ReplaceAll(got, "|", "/"), calls[0], calls[1], took)
			})
		})
	}
	t.Log("\n" + table.String())
}

// playThrough sends one chat request through the gateway, streamed or not, and returns the answer's text.
func playThrough(ctx context.Context, api *openai.Client, stream bool) (string, error) {
	if !stream {
		resp, err := api.CreateChatCompletion(ctx, chatRequest())
		if err != nil {
			return "", err
		}
		return resp.Choices[0].Message.Content, nil
	}
	s, err := api.CreateChatCompletionStream(ctx, chatRequest())
	if err != nil {
		return "", err
	}
	defer s.Close()
	return failovertest.ReadStream(s)
}

// TestScenarioPrimaryDownThenBack: through the gateway, eastus answers 503 for 60 s, then recovers; a request
// every 2 s meanwhile is served by westus, and eastus serves again within 10 s of its recovery.
func TestScenarioPrimaryDownThenBack(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		servers, api := bubbleGateway(t, gateway.Config{})
		east := servers[0]
		back, recovered, err := failovertest.Outage(east, func() (string, error) { return playThrough(t.Context(), api, false) })
		require.NoError(t, err)
		require.True(t, recovered, "eastus served again")
		assert.LessOrEqual(t, back, 10*time.Second, "back within the capped rest")
		t.Logf("eastus served again %s after it recovered; it was asked %d times in all", back, len(east.Calls()))
	})
}
