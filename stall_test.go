package failover_test

import (
	"errors"
	"io"
	"net/http"
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

// TestStreamThatStallsAfterContentIsCut: a region that sends some content, then goes silent, holds the caller
// no longer than the stream idle timeout: the stream ends with ErrStreamCut caused by ErrStreamStalled, and the
// region rests, so the next request goes elsewhere.
func TestStreamThatStallsAfterContentIsCut(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		servers, client := bubbleFleet(t, []string{"eastus", "westus"}, failover.WithAttemptTimeout(10*time.Second),
			failover.WithStreamIdleTimeout(5*time.Second))
		servers[0].Script(failovertest.Reply{Content: "one two three four", StreamStallAfter: 2})

		start := time.Now()
		stream, err := client.CreateChatCompletionStream(t.Context(), openai.ChatCompletionRequest{Messages: hello()})
		require.NoError(t, err)
		defer stream.Close()
		var text strings.Builder
		for range 100 {
			chunk, err := stream.Recv()
			if err != nil {
				require.ErrorIs(t, err, failover.ErrStreamCut)
				require.ErrorIs(t, err, failover.ErrStreamStalled)
				break
			}
			if len(chunk.Choices) > 0 {
				text.WriteString(chunk.Choices[0].Delta.Content)
			}
		}
		assert.Equal(t, "one two ", text.String())
		assert.Equal(t, 5*time.Second, time.Since(start), "cut when the idle timeout ran out, not later")

		var rec recorder
		_, err = client.ChatCompletion(rec.context(t.Context()), hello())
		require.NoError(t, err)
		assert.Equal(t, []string{"westus"}, rec.regions(), "the stalled region rests")
	})
}

// TestSlowReaderIsNotAStall: the idle timeout counts only the wait for the region, not the caller's own time
// between reads.
func TestSlowReaderIsNotAStall(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		_, client := bubbleFleet(t, []string{"eastus"}, failover.WithStreamIdleTimeout(time.Second))
		stream, err := client.CreateChatCompletionStream(t.Context(), openai.ChatCompletionRequest{Messages: hello()})
		require.NoError(t, err)
		defer stream.Close()
		var text strings.Builder
		for range 100 {
			time.Sleep(3 * time.Second) // a caller busy with each chunk (virtual time)
			chunk, err := stream.Recv()
			if errors.Is(err, io.EOF) {
				break
			}
			require.NoError(t, err)
			if len(chunk.Choices) > 0 {
				text.WriteString(chunk.Choices[0].Delta.Content)
			}
		}
		assert.Equal(t, "Hello from eastus.", text.String())
	})
}

// TestResponsesStreamThatStallsIsCut: the same for the Responses API's typed stream, through the client as a
// transport: the body's read fails with ErrStreamCut within the idle timeout.
func TestResponsesStreamThatStallsIsCut(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		servers, client := bubbleFleet(t, []string{"eastus"}, failover.WithStreamIdleTimeout(2*time.Second))
		servers[0].Script(failovertest.Reply{Content: "one two three", StreamStallAfter: 1})
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, "https://caller.example/v1/responses",
			strings.NewReader(`{"model":"gpt-4o","input":"hi","stream":true}`))
		require.NoError(t, err)
		start := time.Now()
		resp, err := client.RoundTrip(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		data, err := io.ReadAll(resp.Body)
		require.ErrorIs(t, err, failover.ErrStreamStalled)
		assert.Contains(t, string(data), `"delta":"one "`)
		assert.LessOrEqual(t, time.Since(start), 2*time.Second)
	})
}
