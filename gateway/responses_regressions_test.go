package gateway_test

// Second review of issue 18 through the gateway: each test here failed on the code as reviewed.

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/aoai-failover/failover/failovertest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// BUG: when the region that holds a response fails (500) a GET of it, the answer is the client's own 503
// stored_state_unavailable, but the gateway labels it X-Failover-Region: eastus, "the region that served",
// because the client reports the attempt as OutcomeReturned (its answer went to the caller as it came), which
// it did not.
func TestStoredStateUnavailableNamesNoServingRegion(t *testing.T) {
	f := v1Fleet(t, "eastus", "westus")
	auth := map[string]string{"api-key": gatewayKey}
	resp, answer := post(t, f.url, "/v1/responses", `{"model":"gpt-4o","input":"Say hello."}`, auth)
	require.Equal(t, http.StatusOK, resp.StatusCode, answer)
	var created struct{ ID string }
	require.NoError(t, json.Unmarshal([]byte(answer), &created), answer)
	require.Equal(t, "eastus", resp.Header.Get("X-Failover-Region"))

	f.regions[0].Script(failovertest.InternalError())
	got, body := send(t, http.MethodGet, f.url+"/v1/responses/"+created.ID, auth, nil)
	require.Equal(t, http.StatusServiceUnavailable, got.StatusCode, body)
	assert.Contains(t, body, "stored_state_unavailable")
	assert.NotEmpty(t, got.Header.Get("Retry-After"))
	assert.Empty(t, got.Header.Get("X-Failover-Region"), "no region served this answer: the client made it")
	assert.NotContains(t, body, "500 returned", "the region's 500 was not returned to the caller")
}

// BUG: a typed stream read by id (GET /responses/{id}?stream=true) that the region cuts before
// response.completed, closing a close-delimited body, reaches the gateway as a clean end: the gateway ends the
// stream as complete, with no error event, and counts no cut. A create's stream cut the same way ends with the
// typed error event.
func TestStreamByIDCutEndsWithErrorEvent(t *testing.T) {
	const (
		created = "event: response.created\ndata: {\"type\":\"response.created\",\"sequence_number\":0,\"response\":{\"id\":\"resp_raw1\",\"object\":\"response\",\"status\":\"in_progress\",\"output\":[]}}\n\n"
		delta   = "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"sequence_number\":1,\"item_id\":\"msg_raw1\",\"output_index\":0,\"content_index\":0,\"delta\":\"Hello\"}\n\n"
	)
	_, url := frontRegion(t, "region-key-0a1b2c3d", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, buf, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		fmt.Fprint(buf, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"+created+delta)
		_ = buf.Flush()
	}))
	auth := map[string]string{"api-key": gatewayKey}
	for _, tc := range []struct{ method, path, body string }{
		{http.MethodPost, "/v1/responses", `{"model":"gpt-4o","input":"hi","stream":true}`},
		{http.MethodGet, "/v1/responses/resp_raw1?stream=true&starting_after=0", ""},
	} {
		t.Run(tc.method, func(t *testing.T) {
			var resp *http.Response
			var stream string
			if tc.method == http.MethodPost {
				resp, stream = post(t, url, tc.path, tc.body, auth)
			} else {
				resp, stream = send(t, tc.method, url+tc.path, auth, nil)
			}
			require.Equal(t, http.StatusOK, resp.StatusCode, stream)
			events := typedEvents(t, stream)
			require.NotEmpty(t, events, stream)
			last := events[len(events)-1]
			assert.Equal(t, "error", last.name, "a cut stream ends with the error event: %s", stream)
			assert.True(t, strings.Contains(stream, "response.output_text.delta"))
		})
	}
}
