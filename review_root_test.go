package failover_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/aoai-failover/failover"
	"github.com/aoai-failover/failover/failovertest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestReviewRootSlowerModelStaysRelearned: what is wrong: once a region's history expires (learnedHistory), one
// slow answer served at the cold-start limit refreshes latencies.last, but latencies.percentile returns its
// cached p99 until 8 new samples have come, so the next call of the now-slow model is cut again at the old
// (fast) limit, and as cut calls are never sampled, relearning takes about 8 × 10 minutes. Right behaviour: the
// slow answer served after the expiry teaches the limit at once (4 × 1 min here), so the next slow call is served
// where it was sent.
func TestReviewRootSlowerModelStaysRelearned(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		servers, client := bubbleFleet(t, []string{"eastus", "westus"}, failover.WithQuotaSteering(false))
		for range 21 { // the 21st call computes (and caches) the p99: 1 s
			servers[0].Script(failovertest.Reply{Delay: time.Second})
			_, err := client.ChatCompletion(t.Context(), hello())
			require.NoError(t, err)
		}
		servers[0].SetDefault(failovertest.Reply{Delay: time.Minute}) // the model is slower from now on
		text, err := client.ChatCompletion(t.Context(), hello())
		require.NoError(t, err)
		require.Equal(t, "Hello from westus.", text, "cut at the learned limit")

		time.Sleep(10 * time.Minute) // eastus's history expires
		text, err = client.ChatCompletion(t.Context(), hello())
		require.NoError(t, err)
		require.Equal(t, "Hello from eastus.", text, "served at the cold-start limit")

		var rec recorder
		start := time.Now()
		text, err = client.ChatCompletion(rec.context(t.Context()), hello())
		require.NoError(t, err)
		assert.Equal(t, "Hello from eastus.", text, "the slow pace was learned from the answer just served")
		assert.Equal(t, time.Minute, time.Since(start))
		assert.Equal(t, []string{"eastus"}, rec.regions())
	})
}

// TestReviewRootEscapedSecretInAPartialDataLineIsScrubbed: what is wrong: streamBody.step (stream.go) scrubs a
// data line that is JSON but not a chunk's object (partialData) with s.scrub(line), the whole line with its
// "data: " prefix, so engine.scrub's escape check (withoutEscapes) never parses it as JSON, and a key a server
// echoes spelt with a \u escape reaches the caller, who reads it plainly once the line is decoded. Right
// behaviour: scrub the data (the JSON value) as go-openai and the npm SDK decode it, and pass the line on as
// "data: " + scrubbed data + its ending, as the error-event case does.
func TestReviewRootEscapedSecretInAPartialDataLineIsScrubbed(t *testing.T) {
	key := secrets[0]
	escaped := fmt.Sprintf(`\u%04x`, key[0]) + key[1:] // the key, its first character spelt as an escape
	raw, err := streamFrom(t, key, `data: {"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"Hi"}}]}`+"\n\n"+
		`data: "the key `+escaped+` is not valid"`+"\n\n"+
		`data: {"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}`+"\n\n"+
		"data: [DONE]\n\n")
	require.NoError(t, err)
	require.Contains(t, raw, `"content":"Hi"`, "the stream was served")
	assert.NotContains(t, raw, key)
	lines := bufio.NewScanner(strings.NewReader(raw))
	for lines.Scan() {
		data, ok := strings.CutPrefix(lines.Text(), "data: ")
		var v any
		if !ok || json.Unmarshal([]byte(data), &v) != nil {
			continue
		}
		assert.NotContains(t, fmt.Sprint(v), key, "a data line, decoded as a client decodes it, shows the key")
	}
}

// TestReviewRootNestedStreamTrueDoesNotCutASlowAnswer: what is wrong: request.stream comes from jsonTrue (estimate.go),
// which finds a member "stream" whose value is true anywhere in the body, at any depth, and attemptClock (limits.go)
// now times a "stream" request's headers with the silence limit (10 s). A non-streaming call ("stream": false) whose
// tool schema holds {"stream": true} (an example of the tool's own arguments) is taken for a stream, so its
// headers, which come only with its finished answer, are cut at 10 s in every region and the request fails. Right
// behaviour: only the top-level "stream" member decides (as Azure reads it), and the 30 s answer is served where
// it was sent.
func TestReviewRootNestedStreamTrueDoesNotCutASlowAnswer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		servers, client := bubbleFleet(t, []string{"eastus", "westus"})
		for _, s := range servers {
			s.Script(failovertest.Reply{Delay: 30 * time.Second})
		}
		body := `{"model":"gpt-4o","stream":false,"messages":[{"role":"user","content":"hi"}],` +
			`"tools":[{"type":"function","function":{"name":"fetch","parameters":{"type":"object",` +
			`"properties":{"stream":{"type":"boolean"}},"examples":[{"stream":true}]}}}]}`
		var rec recorder
		start := time.Now()
		resp := postChatBody(t, client, rec.context(t.Context()), body)
		assert.Equal(t, http.StatusOK, resp.StatusCode, "the slow answer is served")
		assert.Equal(t, 30*time.Second, time.Since(start))
		assert.Equal(t, []string{"eastus"}, rec.regions(), "not cut as a silent stream")
	})
}

// TestReviewRootQueuedForAConnectionIsNotSilence: what is wrong: attemptClock.sending (limits.go) starts the silence
// limit at httptrace's GetConn, which the transport calls before it waits for a connection of its own pool: with
// MaxConnsPerHost (a caller's transport, or the pool simply busy), a request queued behind another slow call of the
// same region is cut at the header timeout as "no connection" and the healthy region rests as failing. Right
// behaviour: time only the region's part (ConnectStart/ConnectDone, TLS handshake), or restart the silence limit
// when a dial actually begins, so that waiting for a local connection is bounded by the attempt limit alone.
func TestReviewRootQueuedForAConnectionIsNotSilence(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		network := failovertest.NewNetwork()
		t.Cleanup(network.Close)
		servers := startRegions(t, []string{"eastus", "westus"}, failovertest.OnNetwork(network))
		transport := network.Client().Transport.(*http.Transport).Clone()
		transport.MaxConnsPerHost = 1
		t.Cleanup(transport.CloseIdleConnections)
		client := newClient(t, regionsOf(servers...), failover.WithHTTPClient(&http.Client{Transport: transport}))
		servers[0].Script(failovertest.Reply{Delay: 15 * time.Second}, failovertest.Reply{Delay: 15 * time.Second})

		regions := make(chan []string, 2)
		for range 2 {
			go func() {
				var rec recorder
				_, _ = client.ChatCompletion(rec.context(t.Context()), hello())
				regions <- rec.regions()
			}()
			synctest.Wait() // the first holds eastus's one connection before the second asks for it
		}
		for range 2 {
			assert.Equal(t, []string{"eastus"}, <-regions, "served by eastus, which was slow but never silent")
		}
	})
}

// slowUplink is a connection whose writes take a second per 64 KiB (or less), as a large prompt (images) on a slow link.
type slowUplink struct{ net.Conn }

func (c slowUplink) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		n := min(len(p), 64<<10)
		time.Sleep(time.Second) // in the bubble: fake time, the link's pace
		m, err := c.Conn.Write(p[:n])
		written += m
		if err != nil {
			return written, err
		}
		p = p[n:]
	}
	return written, nil
}

// TestReviewRootLargeStreamedPromptIsNotCutWhileUploading: what is wrong: for a stream, attemptClock.sending
// (limits.go) times everything from the moment the request leaves to its response headers with the silence limit
// (10 s), including the upload of the request body, which Azure reads whole before it answers. A streamed request
// with a large prompt (base64 images, some MB) over a slow uplink takes longer than that to send, and is cut as
// "no response headers" in every region, each of which rests as failing. Right behaviour: start (or restart) the
// silence limit once the request is written (httptrace WroteRequest), so that only the region's silence counts.
func TestReviewRootLargeStreamedPromptIsNotCutWhileUploading(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// Last of the cleanups: a server connection whose request was cut lingers half a second in
		// closeWriteAndWait (fake time here) before it ends.
		t.Cleanup(func() { time.Sleep(time.Second) })
		network := failovertest.NewNetwork()
		t.Cleanup(network.Close)
		var regions []failover.Region
		for _, name := range []string{"eastus", "westus"} {
			url, stop := network.Serve(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.Copy(io.Discard, r.Body) // as Azure: the whole request is read before the answer begins
				w.Header().Set("Content-Type", "text/event-stream")
				_, _ = io.WriteString(w, `data: {"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"A cat."}}]}`+"\n\n")
				_, _ = io.WriteString(w, `data: {"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}`+"\n\n")
				_, _ = io.WriteString(w, "data: [DONE]\n\n")
			}))
			t.Cleanup(stop)
			regions = append(regions, failover.Region{Name: name, Endpoint: url, APIKey: "key-" + name})
		}
		transport := network.Client().Transport.(*http.Transport).Clone()
		dial := transport.DialContext
		transport.DialContext = func(ctx context.Context, netw, addr string) (net.Conn, error) {
			conn, err := dial(ctx, netw, addr)
			if err != nil {
				return nil, err
			}
			return slowUplink{conn}, nil
		}
		t.Cleanup(transport.CloseIdleConnections)
		client := newClient(t, regions, failover.WithHTTPClient(&http.Client{Transport: transport}))

		image := strings.Repeat("A", 1<<20) // 1 MiB of base64: some 30 s to send over this link
		body := `{"model":"gpt-4o","messages":[{"role":"user","content":[{"type":"text","text":"What is this?"},` +
			`{"type":"image_url","image_url":{"url":"data:image/png;base64,` + image + `"}}]}],"stream":true}` // as go-openai orders it
		var rec recorder
		req, err := http.NewRequestWithContext(rec.context(t.Context()), http.MethodPost,
			"https://example.invalid/v1/chat/completions", strings.NewReader(body))
		require.NoError(t, err)
		resp, err := client.RoundTrip(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		assert.Equal(t, http.StatusOK, resp.StatusCode)
		assert.Equal(t, []string{"eastus"}, rec.regions(), "the healthy region was sending its answer, not silent")
	})
}

// TestReviewRootLargeStreamWithStreamFirstIsTimedForSilence: what is wrong: request.stream is read by shape
// (estimate.go) from the last 64 KiB of the body alone (readBodyBytes keeps a tail of maxScanned), so a streamed
// request whose "stream": true comes before a long prompt (as a JavaScript caller writes {model, stream, messages})
// is taken for a non-streaming call: attemptClock times only its connection, and a region that takes it and never
// sends headers holds it for the whole cold-start limit (5 min) instead of the header timeout (10 s). Right
// behaviour: find the top-level "stream" member wherever it is (or read it when the body is replayed), so that the
// silent region is left after 10 s.
func TestReviewRootLargeStreamWithStreamFirstIsTimedForSilence(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		servers, client := bubbleFleet(t, []string{"eastus", "westus"})
		servers[0].Script(failovertest.Hang())
		body := `{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"` +
			strings.Repeat("Summarize this. ", 8<<10) + `"}]}` // a 128 KiB prompt
		var rec recorder
		start := time.Now()
		resp := postChatBody(t, client, rec.context(t.Context()), body)
		_, _ = io.Copy(io.Discard, resp.Body)
		assert.Equal(t, http.StatusOK, resp.StatusCode)
		assert.Equal(t, failover.DefaultHeaderTimeout, time.Since(start), "the silent region is left at the header timeout")
		assert.Equal(t, []string{"eastus", "westus"}, rec.regions())
	})
}

// TestReviewRootQuotaOfARealModelIsKeptAfterLongNamesAgeOut: what is wrong: per-model state is now bounded in
// bytes (track, modelname.go, refuses a key past maxTrackedModelBytes), but quotaBook.at (quota.go) makes room only
// when the map holds maxTrackedModels entries: once 256 names of 256 bytes have had quotas, the map is full in
// bytes with 256 entries, nothing is ever dropped, and no other model's quota is kept again, even after those
// names' quotas know nothing any more, so steering stops working for every model that comes later. Right
// behaviour: make room as setModelLocked does, when the map is full in entries or in bytes.
func TestReviewRootQuotaOfARealModelIsKeptAfterLongNamesAgeOut(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		servers, client := bubbleFleet(t, []string{"eastus", "westus"}, failover.WithStrategy(failover.StrategyOrdered))
		east, west := servers[0], servers[1]
		east.SetDefault(steerLeft("100", "600"))
		for i := range maxTrackedModelBytes / failover.MaxModelNameBytes {
			req := steerSmall()
			req.Model = fmt.Sprintf("%03d", i) + strings.Repeat("m", failover.MaxModelNameBytes-3) // a long deployment name
			assertServedBy(t, steerSend(t, client, req), "eastus")
		}
		time.Sleep(5 * time.Minute) // those quotas know nothing any more, and nothing is sent under them

		assertServedBy(t, steerSend(t, client, steerSmall()), "eastus", "nothing is known of gpt-4o yet")
		require.Zero(t, west.Requests())
		assertServedBy(t, steerSend(t, client, steerBig()), "westus", "eastus said it has 100 tokens left")
	})
}

// maxTrackedModelBytes is the failover package's bound on the bytes of the names keying one map (modelname.go).
const maxTrackedModelBytes = 64 << 10

// postChatBody sends a chat request with body through client as its transport; the answer's body is closed when the
// test ends.
func postChatBody(t *testing.T, client *failover.Client, ctx context.Context, body string) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "https://example.invalid/v1/chat/completions", strings.NewReader(body))
	require.NoError(t, err)
	resp, err := client.RoundTrip(req)
	require.NoError(t, err)
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}
