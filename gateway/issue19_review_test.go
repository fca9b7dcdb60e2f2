package gateway_test

import (
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/aoai-failover/failover"
	"github.com/aoai-failover/failover/failovertest"
	"github.com/aoai-failover/failover/gateway"
	openai "github.com/sashabaranov/go-openai"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestReview19StalledStreamThroughTheGateway (held up): a region that stalls mid-stream is cut by the gateway within the
// client's stream idle timeout, with the gateway's cut event (an error to go-openai), not held until the
// gateway's request timeout.
func TestReview19StalledStreamThroughTheGateway(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		servers, api := bubbleGateway(t, gateway.Config{}, failover.WithStreamIdleTimeout(5*time.Second))
		servers[0].Script(failovertest.Reply{Content: "one two three four", StreamStallAfter: 2})
		start := time.Now()
		stream, err := api.CreateChatCompletionStream(t.Context(), openai.ChatCompletionRequest{Model: "gpt-4o",
			Messages: []openai.ChatCompletionMessage{{Role: "user", Content: "hi"}}})
		require.NoError(t, err)
		defer stream.Close()
		var text strings.Builder
		for range 100 {
			chunk, err := stream.Recv()
			if err != nil {
				assert.ErrorContains(t, err, "stream")
				break
			}
			if len(chunk.Choices) > 0 {
				text.WriteString(chunk.Choices[0].Delta.Content)
			}
		}
		assert.Equal(t, "one two ", text.String())
		assert.LessOrEqual(t, time.Since(start), 5*time.Second)
	})
}
