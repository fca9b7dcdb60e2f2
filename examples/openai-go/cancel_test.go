package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/aoai-failover/failover"
	"github.com/aoai-failover/failover/failovertest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Cancellation: the caller's context is the one thing that ends a request with an error rather than an answer.
// The fakes below never answer on their own, so a call that returns at all returns because the cancellation went
// through the SDK, the failover client and the connection to the region; goleak (TestMain) then checks that
// nothing was left behind.

// hangingRegion starts a fake region that holds every request until the client gives up (a hung request, or a
// stream whose headers came but whose first content never does), and reports each request's arrival on the
// returned channel.
func hangingRegion(t *testing.T, reply failovertest.Reply) (*failovertest.Server, <-chan struct{}) {
	t.Helper()
	arrived := make(chan struct{}, 16)
	s := failovertest.NewRegion("eastus", failovertest.WithOnRequest(func(failovertest.Call) { arrived <- struct{}{} }))
	t.Cleanup(s.Close)
	s.SetDefault(reply)
	return s, arrived
}

// TestSDKCallEndsWithItsContext: with the region holding the request, canceling the context makes each
// operation return context.Canceled, from plain openai-go and from the azure package, and the SDK does not
// retry.
func TestSDKCallEndsWithItsContext(t *testing.T) {
	replies := []struct {
		name  string
		reply failovertest.Reply
	}{
		{"hung", failovertest.Hang()},
		{"headers without a body", failovertest.Reply{BodyDelay: time.Hour}},
		{"answer held back", failovertest.Reply{Delay: time.Hour}},
	}
	for _, r := range replies {
		for _, op := range operations {
			t.Run(r.name+"/"+op.name, func(t *testing.T) {
				s, arrived := hangingRegion(t, r.reply)
				rt := &countingTransport{next: newFailover(t, azureRegions(s))}
				ctx, cancel := context.WithCancel(t.Context())
				go func() {
					<-arrived // the region holds the request
					cancel()
				}()

				_, err := op.call(t, ctx, plainSDK(rt))
				require.ErrorIs(t, err, context.Canceled)
				assert.Equal(t, int64(1), rt.calls.Load(), "the SDK did not retry")
				assert.Equal(t, 1, s.Requests())
			})
		}
	}
}

// TestAzureSDKCallEndsWithItsContext is TestSDKCallEndsWithItsContext's hung case for the azure package, whose
// credential middleware sits between the SDK and the failover client.
func TestAzureSDKCallEndsWithItsContext(t *testing.T) {
	for _, op := range operations {
		t.Run(op.name, func(t *testing.T) {
			s, arrived := hangingRegion(t, failovertest.Hang())
			rt := &countingTransport{next: newFailover(t, azureRegions(s))}
			ctx, cancel := context.WithCancel(t.Context())
			go func() {
				<-arrived
				cancel()
			}()

			_, err := op.call(t, ctx, azureSDK(rt, callerAPIVersion))
			require.ErrorIs(t, err, context.Canceled)
			assert.Equal(t, int64(1), rt.calls.Load(), "the SDK did not retry")
		})
	}
}

// TestSDKCallWithCanceledContext: a context canceled before the call sends nothing and returns
// context.Canceled.
func TestSDKCallWithCanceledContext(t *testing.T) {
	servers := startRegions(t, "eastus")
	fc := newFailover(t, azureRegions(servers...))
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	for _, op := range operations {
		_, err := op.call(t, ctx, plainSDK(fc))
		require.ErrorIs(t, err, context.Canceled, op.name)
	}
	assert.Zero(t, servers[0].Requests())
}

// TestSDKStreamEndsWithItsContext: canceling the context while a stream is being read, after its first content
// and with the rest held back, ends the stream with context.Canceled. The region is an OpenAI-compatible handler
// of the test's own, since the fakes send a stream whole.
func TestSDKStreamEndsWithItsContext(t *testing.T) {
	stalled := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, firstChunk)
		_ = http.NewResponseController(w).Flush()
		close(stalled)
		<-r.Context().Done() // the rest never comes
	}))
	t.Cleanup(srv.Close)
	fc := newFailover(t, []failover.Region{
		{Name: "stalls", Kind: failover.KindOpenAI, Endpoint: srv.URL + "/v1", APIKey: "sk-stalls"}})
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	client := plainSDK(fc)

	stream := client.Chat.Completions.NewStreaming(ctx, chatParams())
	defer stream.Close()
	require.True(t, stream.Next(), "the first chunk: %v", stream.Err())
	require.Equal(t, "Hello", stream.Current().Choices[0].Delta.Content)
	<-stalled
	cancel()
	assert.False(t, stream.Next(), "no more chunks")
	require.ErrorIs(t, stream.Err(), context.Canceled)
}

// firstChunk is a stream's first event: the role and the first word.
const firstChunk = `data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"gpt-4o",` +
	`"choices":[{"index":0,"delta":{"role":"assistant","content":"Hello"},"finish_reason":null}]}` + "\n\n"
