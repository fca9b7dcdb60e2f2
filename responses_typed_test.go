package failover_test

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/aoai-failover/failover"
	"github.com/aoai-failover/failover/failovertest"
	openai "github.com/sashabaranov/go-openai"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestCreateResponseFailsOverAndFollowsUpWhereItWasMade: the typed calls in go-openai's types: a create passes a
// throttled region; its follow-up and a GET go to the region that made it, though the first is serving again.
func TestCreateResponseFailsOverAndFollowsUpWhereItWasMade(t *testing.T) {
	servers := startRegions(t, []string{"eastus", "westus"})
	east, west := servers[0], servers[1]
	client := newClient(t, regionsOf(servers...), fixedBackoff(time.Nanosecond))
	east.Script(failovertest.Unavailable())

	first, err := client.CreateResponse(t.Context(), openai.CreateResponseRequest{Input: "Say hello."})
	require.NoError(t, err)
	assert.Equal(t, "Hello from westus.", first.GetOutputText())

	next, err := client.CreateResponse(t.Context(), openai.CreateResponseRequest{Input: "Again.", PreviousResponseID: first.ID})
	require.NoError(t, err)
	got, err := client.GetResponse(t.Context(), next.ID)
	require.NoError(t, err)
	assert.Equal(t, next.ID, got.ID)
	deleted, err := client.DeleteResponse(t.Context(), first.ID)
	require.NoError(t, err)
	assert.True(t, deleted.Deleted)

	assert.Len(t, east.Calls(), 1, "only the first create, which it failed")
	assert.Equal(t, []string{"responses", "responses", "responses.get", "responses.delete"}, operations(west))
}

// TestCreateResponseStateUnavailableIsTyped: when the region that made a response fails, the typed call's
// follow-up fails with ErrStoredStateUnavailable, naming the region, and no other region is asked.
func TestCreateResponseStateUnavailableIsTyped(t *testing.T) {
	servers := startRegions(t, []string{"eastus", "westus"})
	east, west := servers[0], servers[1]
	client := newClient(t, regionsOf(servers...), failover.WithMaxWait(0))
	first, err := client.CreateResponse(t.Context(), openai.CreateResponseRequest{Input: "Say hello."})
	require.NoError(t, err)

	east.Script(failovertest.Unavailable())
	_, err = client.CreateResponse(t.Context(), openai.CreateResponseRequest{Input: "More.", PreviousResponseID: first.ID})
	require.ErrorIs(t, err, failover.ErrStoredStateUnavailable)
	var exhausted *failover.ExhaustedError
	require.ErrorAs(t, err, &exhausted)
	assert.Equal(t, "eastus", exhausted.HeldBy)
	assert.False(t, exhausted.RetryAt.IsZero(), "the caller is told when to try again")
	var apiErr *openai.APIError
	assert.ErrorAs(t, err, &apiErr, "the region's own answer is reachable")
	assert.Empty(t, west.Calls())
}

// TestCreateResponseStreamEndsAtCompleted: go-openai's Responses stream over the client ends with io.EOF after
// response.completed (no [DONE] is sent), having passed a region that failed before its first delta; one cut
// after its first delta ends with ErrStreamCut instead.
func TestCreateResponseStreamEndsAtCompleted(t *testing.T) {
	servers := startRegions(t, []string{"eastus", "westus"})
	client := newClient(t, regionsOf(servers...))
	servers[0].Script(failovertest.StreamFailure(1))

	text, last, err := readResponseStream(t, client)
	require.ErrorIs(t, err, io.EOF)
	assert.Equal(t, "Hello from westus.", text)
	assert.Equal(t, openai.ResponseStreamEventType("response.completed"), last)

	cut := startRegions(t, []string{"eastus"})
	cut[0].Script(failovertest.Reply{StreamCutAfter: 1})
	text, _, err = readResponseStream(t, newClient(t, regionsOf(cut...)))
	require.ErrorIs(t, err, failover.ErrStreamCut)
	assert.NotEmpty(t, text)

	// A delta whose data is not JSON: before the first content, failed over unseen; after it, a cut.
	servers[0].Script(failovertest.Reply{StreamMalformedAt: 1})
	text, last, err = readResponseStream(t, client)
	require.ErrorIs(t, err, io.EOF)
	assert.Equal(t, "Hello from westus.", text)
	assert.Equal(t, openai.ResponseStreamEventType("response.completed"), last)
	cut[0].Script(failovertest.Reply{StreamMalformedAt: 2})
	text, _, err = readResponseStream(t, newClient(t, regionsOf(cut...)))
	require.ErrorIs(t, err, failover.ErrStreamCut)
	assert.ErrorContains(t, err, "not JSON")
	assert.Equal(t, "Hello ", text)
}

func readResponseStream(t *testing.T, client *failover.Client) (text string, last openai.ResponseStreamEventType, err error) {
	t.Helper()
	stream, err := client.CreateResponseStream(t.Context(), openai.CreateResponseRequest{Input: "Say hello."})
	require.NoError(t, err)
	defer stream.Close()
	var b strings.Builder
	for range 1000 {
		event, err := stream.Recv()
		if err != nil {
			return b.String(), last, err
		}
		last = event.Type
		if event.Type == openai.ResponseStreamEventOutputTextDelta {
			b.WriteString(event.Delta)
		}
	}
	return b.String(), last, errors.New("stream did not end")
}

// TestFilesArePinned: file and batch requests go to one region and are never failed over: an upload to the first
// region (or the one HeaderPinRegion names); later requests about the file, and a batch of it, to the region that
// made it; a failing region's answer is the typed 503, not a hop to another region.
func TestFilesArePinned(t *testing.T) {
	hits := make(chan hit, 64)
	var regions []failover.Region
	for _, name := range []string{"eastus", "westus"} {
		regions = append(regions, failover.Region{Name: name, Endpoint: newFileServer(t, name, hits), APIKey: "key-of-" + name})
	}
	client := newClient(t, regions)
	send := func(method, path, body string, header ...string) *http.Response {
		req, err := http.NewRequestWithContext(t.Context(), method, "https://caller.example"+path, strings.NewReader(body))
		require.NoError(t, err)
		if len(header) == 2 {
			req.Header.Set(header[0], header[1])
		}
		resp, err := client.Do(req)
		require.NoError(t, err)
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}
	next := func() hit {
		select {
		case h := <-hits:
			return h
		default:
			t.Fatal("no request reached a region")
			return hit{}
		}
	}

	up := send(http.MethodPost, "/v1/files", "--x\r\n", failover.HeaderPinRegion, "westus")
	require.Equal(t, http.StatusOK, up.StatusCode)
	assert.Equal(t, hit{"westus", http.MethodPost, "/openai/files", "api-version=2024-10-21"}, next())

	content := send(http.MethodGet, "/openai/files/file-westus/content?api-version=2024-10-21", "")
	assert.Equal(t, http.StatusOK, content.StatusCode)
	assert.Equal(t, hit{"westus", http.MethodGet, "/openai/files/file-westus/content", "api-version=2024-10-21"}, next())

	batch := send(http.MethodPost, "/v1/batches", `{"input_file_id":"file-westus","endpoint":"/chat/completions","completion_window":"24h"}`)
	assert.Equal(t, http.StatusOK, batch.StatusCode)
	assert.Equal(t, "westus", next().region, "a batch runs where its input file is")

	list := send(http.MethodGet, "/v1/files?purpose=batch", "")
	assert.Equal(t, http.StatusOK, list.StatusCode)
	assert.Equal(t, hit{"eastus", http.MethodGet, "/openai/files", "purpose=batch&api-version=2024-10-21"}, next(),
		"no id, no header: the first region, with the caller's query")

	unknown := send(http.MethodGet, "/v1/files/file-nowhere", "", failover.HeaderPinRegion, "mars")
	assert.Equal(t, http.StatusBadRequest, unknown.StatusCode, "a pin to no region of the client")
	assert.Empty(t, hits)

	failing := send(http.MethodGet, "/v1/batches/batch-fail", "", failover.HeaderPinRegion, "eastus")
	assert.Equal(t, http.StatusServiceUnavailable, failing.StatusCode)
	assert.Equal(t, "eastus", next().region)
	assert.Empty(t, hits, "never failed over")
}

// hit is a request a region's file server received.
type hit struct{ region, method, path, query string }

// newFileServer is a region's file and batch API, as Azure's classic surface answers it: it records each
// request and makes files and batches named after the region.
func newFileServer(t *testing.T, name string, hits chan<- hit) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits <- hit{name, r.Method, r.URL.Path, r.URL.RawQuery}
		w.Header().Set("Content-Type", "application/json")
		switch {
		case strings.HasSuffix(r.URL.Path, "batch-fail"):
			w.Header().Set("Retry-After", "3")
			w.WriteHeader(http.StatusInternalServerError)
			fmt.Fprint(w, `{"error":{"code":"InternalServerError","message":"The server had an error."}}`)
		case r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/files"):
			fmt.Fprintf(w, `{"id":"file-%s","object":"file","purpose":"batch"}`, name)
		case r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/batches"):
			fmt.Fprintf(w, `{"id":"batch-%s","object":"batch","status":"validating"}`, name)
		default:
			fmt.Fprint(w, `{"object":"list","data":[]}`)
		}
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}
