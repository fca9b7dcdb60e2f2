package failover_test

// Review of issue 19 (attempt budget, stream idle timeout, streams complete without [DONE], learned attempt
// limits). The tests not marked "held up" failed on the code they were written against.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
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

// TestReview19DeadRegionLimitDoesNotRatchetToTheCeiling: a region that answered in 2 s for a while and then
// never answers again must keep being left within its floor (the issue: "a region that never answers is left
// within its floor"). Each cut attempt is sampled at its elapsed time, which is the limit itself, so the p99
// becomes the limit, the next limit 4× that, and so on: 10 s, 40 s, 160 s, then the 5-minute ceiling, on every
// probe of a dead region.
func TestReview19DeadRegionLimitDoesNotRatchetToTheCeiling(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		servers, client := bubbleFleet(t, []string{"eastus", "westus"}, fixedBackoff(time.Second))
		for range 20 {
			servers[0].Script(failovertest.Reply{Delay: 2 * time.Second})
			_, err := client.ChatCompletion(t.Context(), hello())
			require.NoError(t, err)
		}
		servers[0].SetDefault(failovertest.Hang()) // dead from now on
		var waits []time.Duration
		for range 30 {
			time.Sleep(2 * time.Second) // its rest is over: the next request probes it
			var rec recorder
			_, err := client.ChatCompletion(rec.context(t.Context()), hello())
			require.NoError(t, err)
			if a := rec.first(); a.Region == "eastus" {
				waits = append(waits, a.Duration)
			}
		}
		require.NotEmpty(t, waits)
		assert.LessOrEqual(t, slices.Max(waits), 10*time.Second, "the dead region's probes waited %v", waits)
	})
}

// TestReview19KeepAlivesAreNotProgress: a region that sent some content and then only SSE comments (": ping",
// as proxies and some servers send to keep a connection open) has stalled: the answer makes no progress. Every
// comment re-arms the idle timer, so the caller is held until the region gives up.
func TestReview19KeepAlivesAreNotProgress(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		network := failovertest.NewNetwork()
		t.Cleanup(network.Close)
		url, stop := network.Serve(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/event-stream")
			rc := http.NewResponseController(w)
			fmt.Fprint(w, `data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{"index":0,"delta":{"content":"one "},"finish_reason":null}]}`+"\n\n")
			rc.Flush()
			for range 120 { // two minutes of keep-alives, then the connection ends
				select {
				case <-r.Context().Done():
					return
				case <-time.After(time.Second):
				}
				fmt.Fprint(w, ": ping\n\n")
				rc.Flush()
			}
		}))
		t.Cleanup(stop)
		client := newClient(t, []failover.Region{{Name: "eastus", Endpoint: url, APIKey: "key"}},
			failover.WithHTTPClient(network.Client()), failover.WithStreamIdleTimeout(5*time.Second))
		start := time.Now()
		stream, err := client.CreateChatCompletionStream(t.Context(), openai.ChatCompletionRequest{Messages: hello()})
		require.NoError(t, err)
		defer stream.Close()
		for range 1000 {
			if _, err = stream.Recv(); err != nil {
				break
			}
		}
		require.ErrorIs(t, err, failover.ErrStreamCut)
		assert.ErrorIs(t, err, failover.ErrStreamStalled)
		assert.LessOrEqual(t, time.Since(start), 6*time.Second, "held %s by keep-alives", time.Since(start))
	})
}

// blockingBody is a response body whose Read ignores every context: it hands over its lines, then blocks until
// it is closed, as the body of a transport that does not watch the request's context does.
type blockingBody struct {
	r      *strings.Reader
	closed chan struct{}
}

func (b *blockingBody) Read(p []byte) (int, error) {
	if b.r.Len() > 0 {
		return b.r.Read(p)
	}
	<-b.closed
	return 0, errors.New("body closed")
}

func (b *blockingBody) Close() error {
	select {
	case <-b.closed:
	default:
		close(b.closed)
	}
	return nil
}

type transportFunc func(*http.Request) (*http.Response, error)

func (f transportFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestReview19StallEndsAStreamWhoseBodyIgnoresTheContext: WithHTTPClient accepts any transport; the idle timer
// only cancels the attempt's context, so a body whose Read does not watch it is never ended: the stream that
// stalled holds its caller forever instead of ending within the idle timeout. Closing the body when the timer
// fires would end it whatever the transport.
func TestReview19StallEndsAStreamWhoseBodyIgnoresTheContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var bodies []*blockingBody
		transport := transportFunc(func(r *http.Request) (*http.Response, error) {
			b := &blockingBody{closed: make(chan struct{}), r: strings.NewReader(
				`data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{"index":0,"delta":{"content":"one "},"finish_reason":null}]}` + "\n\n")}
			bodies = append(bodies, b)
			return &http.Response{StatusCode: 200, Header: http.Header{"Content-Type": {"text/event-stream"}},
				Body: b, Request: r}, nil
		})
		client := newClient(t, []failover.Region{{Name: "eastus", Endpoint: "https://east.example", APIKey: "key"}},
			failover.WithHTTPClient(&http.Client{Transport: transport}), failover.WithStreamIdleTimeout(5*time.Second))
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute) // the test's own bound
		defer cancel()
		stream, err := client.CreateChatCompletionStream(ctx, openai.ChatCompletionRequest{Messages: hello()})
		require.NoError(t, err)
		start := time.Now()
		done := make(chan error, 1)
		go func() {
			var err error
			for range 100 {
				if _, err = stream.Recv(); err != nil {
					break
				}
			}
			done <- err
		}()
		select {
		case err = <-done:
			assert.ErrorIs(t, err, failover.ErrStreamStalled)
			assert.LessOrEqual(t, time.Since(start), 5*time.Second)
		case <-time.After(time.Minute):
			t.Errorf("a stalled stream still held its caller after a minute, with a 5 s idle timeout")
			stream.Close()
			for _, b := range bodies {
				b.Close()
			}
			<-done
		}
	})
}

// TestReview19CloseRacesAnArmedIdleTimer: Close racing a Read that armed the idle timer is clean under -race,
// and the timer does not rest the region after the caller closed the stream (held up).
func TestReview19CloseRacesAnArmedIdleTimer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		servers, client := bubbleFleet(t, []string{"eastus"}, failover.WithStreamIdleTimeout(5*time.Second))
		servers[0].Script(failovertest.Reply{Content: "one two three", StreamStallAfter: 1})
		stream, err := client.CreateChatCompletionStream(t.Context(), openai.ChatCompletionRequest{Messages: hello()})
		require.NoError(t, err)
		done := make(chan error, 1)
		go func() {
			var err error
			for range 100 {
				if _, err = stream.Recv(); err != nil {
					break
				}
			}
			done <- err
		}()
		time.Sleep(time.Second) // the reader waits on the stalled region
		stream.Close()
		err = <-done
		require.Error(t, err)
		time.Sleep(10 * time.Second) // past the idle timeout: the timer the read armed must not rest the region
		var rec recorder
		servers[0].Script(failovertest.OK("again"))
		text, err := client.ChatCompletion(rec.context(t.Context()), hello())
		require.NoError(t, err)
		assert.Equal(t, "again", text)
	})
}

// TestReview19LegacyCompletionsStreamWithoutDone (held up): a legacy completions stream (text choices) that ends cleanly
// without [DONE], its choice finished, is complete as a chat stream is.
func TestReview19LegacyCompletionsStreamWithoutDone(t *testing.T) {
	srv := failovertest.NewNetwork()
	t.Cleanup(srv.Close)
	url, stop := srv.Serve(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, `data: {"id":"c","object":"text_completion","created":1,"model":"gpt-35-turbo-instruct","choices":[{"index":0,"text":"Hello","logprobs":null,"finish_reason":null}]}`+"\n\n")
		fmt.Fprint(w, `data: {"id":"c","object":"text_completion","created":1,"model":"gpt-35-turbo-instruct","choices":[{"index":0,"text":"","logprobs":null,"finish_reason":"stop"}]}`+"\n\n")
	}))
	t.Cleanup(stop)
	client := newClient(t, []failover.Region{{Name: "eastus", Endpoint: url, APIKey: "key"}},
		failover.WithHTTPClient(srv.Client()))
	stream, err := doerClient(client).CreateCompletionStream(t.Context(),
		openai.CompletionRequest{Model: "gpt-35-turbo-instruct", Prompt: "hi", Stream: true})
	require.NoError(t, err)
	defer stream.Close()
	var text strings.Builder
	for range 100 {
		chunk, err := stream.Recv()
		if err != nil {
			require.ErrorIs(t, err, io.EOF)
			break
		}
		text.WriteString(chunk.Choices[0].Text)
	}
	assert.Equal(t, "Hello", text.String())
}

// TestReview19HedgesStayWithinTheBudget (held up): with hedging on, the attempt budget bounds hedges as well: three slow
// regions, a budget of 2, hedges after 1 s: two upstream calls at most.
func TestReview19HedgesStayWithinTheBudget(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		servers, client := bubbleFleet(t, []string{"eastus", "westus", "centralus"}, failover.WithAttemptBudget(2),
			failover.WithHedging(failover.Hedging{Delay: time.Second, MaxHedges: 2}))
		for _, s := range servers {
			s.Script(failovertest.Reply{Delay: 5 * time.Second})
		}
		_, err := client.ChatCompletion(t.Context(), hello())
		require.NoError(t, err)
		calls := 0
		for _, s := range servers {
			calls += len(s.Calls())
		}
		assert.LessOrEqual(t, calls, 2)
	})
}

// TestReview19SeekStaysWithinTheBudget: a request about a stored response no one knows the place of is sought
// region by region; with thirty regions, the default budget (20) bounds it too: "counting every upstream call of
// the request".
func TestReview19SeekStaysWithinTheBudget(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		names := make([]string, 30)
		for i := range names {
			names[i] = fmt.Sprintf("region%02d", i)
		}
		servers, client := bubbleFleet(t, names)
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet,
			"https://caller.example/v1/responses/resp_0123456789abcdef", nil)
		require.NoError(t, err)
		resp, err := client.RoundTrip(req)
		if err == nil {
			resp.Body.Close()
		}
		calls := 0
		for _, s := range servers {
			calls += len(s.Calls())
		}
		assert.LessOrEqual(t, calls, failover.MaxDefaultAttemptBudget, "one GET made %d upstream calls", calls)
	})
}
