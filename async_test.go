package failover_test

import (
	"context"
	"fmt"
	"testing"
	"testing/synctest"
	"time"

	"github.com/aoai-failover/failover"
	"github.com/aoai-failover/failover/failovertest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestChatCompletionAsync(t *testing.T) {
	servers := startRegions(t, []string{"eastus", "westus"})
	servers[0].Script(failovertest.RateLimited(time.Second))
	client := newClient(t, regionsOf(servers...))

	results := client.ChatCompletionAsync(t.Context(), hello())
	r, ok := <-results
	require.True(t, ok)
	require.NoError(t, r.Err)
	assert.Equal(t, "Hello from westus.", r.Content)
	assert.Equal(t, r.Content, r.Response.Choices[0].Message.Content)
	_, ok = <-results
	assert.False(t, ok, "the channel is closed after its one result")
}

func TestChatCompletionAsyncErrorsLikeTheSyncCall(t *testing.T) {
	servers := startRegions(t, []string{"eastus"})
	servers[0].SetDefault(failovertest.Unavailable())
	client := newClient(t, regionsOf(servers...), failover.WithMaxWait(0))
	r := <-client.ChatCompletionAsync(t.Context(), hello())
	require.ErrorIs(t, r.Err, failover.ErrExhausted)
	assert.Empty(t, r.Content)
}

func TestChatCompletionAsyncUnreadDoesNotLeak(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	done := make(chan struct{}, 1)
	eastus := failovertest.NewRegion("eastus", failovertest.WithOnRequest(func(failovertest.Call) { done <- struct{}{} }))
	defer eastus.Close()
	client, err := failover.New(regionsOf(eastus), failover.WithModel("gpt-4o"))
	require.NoError(t, err)
	defer client.CloseIdleConnections()

	_ = client.ChatCompletionAsync(t.Context(), hello()) // nobody reads the result
	<-done
	// goleak.VerifyNone retries until the goroutine has delivered into the buffered channel and ended.
}

func TestChatCompletionAsyncCanceled(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	arrived := make(chan struct{}, 1)
	eastus := failovertest.NewRegion("eastus", failovertest.WithOnRequest(func(failovertest.Call) { arrived <- struct{}{} }))
	defer eastus.Close()
	eastus.SetDefault(failovertest.Hang())
	client, err := failover.New(regionsOf(eastus), failover.WithModel("gpt-4o"))
	require.NoError(t, err)
	defer client.CloseIdleConnections()

	ctx, cancel := context.WithCancel(t.Context())
	results := client.ChatCompletionAsync(ctx, hello())
	<-arrived
	cancel()
	r := <-results
	assert.ErrorIs(t, r.Err, context.Canceled)
}

func TestChatCompletionBatchKeepsOrder(t *testing.T) {
	servers := startRegions(t, []string{"eastus", "westus"}, failovertest.WithEcho())
	// Every third request to eastus is throttled, so answers come from both regions and out of order.
	for range 10 {
		servers[0].Script(failovertest.Reply{}, failovertest.Reply{}, failovertest.RateLimited(time.Second))
	}
	client := newClient(t, regionsOf(servers...))

	results := client.ChatCompletionBatch(t.Context(), conversations(25), 4)
	require.Len(t, results, 25)
	for i, r := range results {
		require.NoError(t, r.Err, i)
		assert.Equal(t, fmt.Sprintf("question %d", i), r.Content)
	}
	assert.Positive(t, servers[1].Requests(), "some requests failed over")
}

func TestChatCompletionBatchBoundsConcurrency(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		servers, client := bubbleFleet(t, []string{"eastus"})
		servers[0].SetDefault(failovertest.Slow(time.Second, failovertest.Reply{}))

		start := time.Now()
		results := client.ChatCompletionBatch(t.Context(), conversations(10), 3)
		// With 3 at a time and 1 s each, 10 requests take 4 rounds; a bigger pool would take fewer.
		assert.Equal(t, 4*time.Second, time.Since(start))
		arrivals := map[time.Duration]int{}
		for _, c := range servers[0].Calls() {
			arrivals[c.Time.Sub(start)]++
		}
		assert.Equal(t, map[time.Duration]int{0: 3, time.Second: 3, 2 * time.Second: 3, 3 * time.Second: 1}, arrivals)
		for _, r := range results {
			assert.NoError(t, r.Err)
		}
	})
}

func TestChatCompletionBatchCanceled(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		servers, client := bubbleFleet(t, []string{"eastus"})
		servers[0].SetDefault(failovertest.Slow(time.Second, failovertest.Reply{}))

		ctx, cancel := context.WithTimeout(t.Context(), 1500*time.Millisecond)
		defer cancel()
		results := client.ChatCompletionBatch(ctx, conversations(6), 2)
		var served, canceled int
		for _, r := range results {
			switch {
			case r.Err == nil:
				served++
			case assert.ErrorIs(t, r.Err, context.DeadlineExceeded):
				canceled++
			}
		}
		assert.Equal(t, 2, served, "the first round finished before the deadline")
		assert.Equal(t, 4, canceled)
		assert.Equal(t, 4, servers[0].Requests(), "nothing is sent after the deadline")
	})
}

func TestChatCompletionBatchEmptyAndDefaultConcurrency(t *testing.T) {
	servers := startRegions(t, []string{"eastus"})
	client := newClient(t, regionsOf(servers...))
	assert.Empty(t, client.ChatCompletionBatch(t.Context(), nil, 0))
	results := client.ChatCompletionBatch(t.Context(), conversations(3), 0)
	for _, r := range results {
		assert.NoError(t, r.Err)
	}
}
