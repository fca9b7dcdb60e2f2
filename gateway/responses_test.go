package gateway_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/aoai-failover/failover"
	"github.com/aoai-failover/failover/failovertest"
	"github.com/aoai-failover/failover/gateway"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// v1Fleet is startFleet with its regions on Azure's v1 surface, which serves the Responses API at any version.
func v1Fleet(t *testing.T, names ...string) *fleet {
	t.Helper()
	f := &fleet{}
	var regions []failover.Region
	for _, name := range names {
		s := failovertest.NewRegion(name)
		t.Cleanup(s.Close)
		f.regions = append(f.regions, s)
		regions = append(regions, failover.Region{Name: name, Endpoint: s.V1URL, APIKey: s.Key,
			Deployments: map[string]string{"gpt-4o": "chat-" + name}})
	}
	client, err := failover.New(regions, failover.WithMaxWait(0))
	require.NoError(t, err)
	t.Cleanup(client.CloseIdleConnections)
	f.client = client
	f.gateway, err = gateway.New(client, gateway.Config{Keys: []string{gatewayKey}})
	require.NoError(t, err)
	srv := httptest.NewServer(f.gateway)
	t.Cleanup(srv.Close)
	f.url = srv.URL
	return f
}

// typedEvent is one event of a typed stream: its name and its data.
type typedEvent struct {
	name string
	data map[string]any
}

// typedEvents parses a typed event stream as the openai SDKs read it; every event's data must be one JSON object.
func typedEvents(t *testing.T, stream string) []typedEvent {
	t.Helper()
	var events []typedEvent
	for _, block := range strings.Split(strings.TrimSuffix(stream, "\n\n"), "\n\n") {
		var e typedEvent
		var data []string
		for _, line := range strings.Split(block, "\n") {
			if v, ok := strings.CutPrefix(line, "event:"); ok {
				e.name = strings.TrimSpace(v)
			}
			if v, ok := strings.CutPrefix(line, "data:"); ok {
				data = append(data, strings.TrimPrefix(v, " "))
			}
		}
		require.NoError(t, json.Unmarshal([]byte(strings.Join(data, "\n")), &e.data), "event %q", block)
		events = append(events, e)
	}
	return events
}

// A Responses stream cut after its first delta ends with the Responses API's error event, whose
// sequence_number follows the stream's, in every shape of the create.
func TestResponsesStreamCutEndsWithTypedErrorEvent(t *testing.T) {
	for _, path := range []string{"/v1/responses", "/openai/v1/responses", "/openai/responses?api-version=2025-04-01-preview"} {
		t.Run(path, func(t *testing.T) {
			f := v1Fleet(t, "eastus")
			f.regions[0].Script(failovertest.Reply{Content: "one two three", StreamCutAfter: 1})
			resp, stream := post(t, f.url, path, `{"model":"gpt-4o","input":"Say hello.","stream":true}`,
				map[string]string{"api-key": gatewayKey})
			require.Equal(t, http.StatusOK, resp.StatusCode, stream)
			assert.True(t, strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream"))
			assert.NotContains(t, stream, "[DONE]")

			events := typedEvents(t, stream)
			require.GreaterOrEqual(t, len(events), 2, stream)
			var deltas int
			for _, e := range events {
				if e.name == "response.output_text.delta" {
					deltas++
				}
			}
			assert.Equal(t, 1, deltas, "the region cut the stream after its first delta")
			last, before := events[len(events)-1], events[len(events)-2]
			assert.Equal(t, "error", last.name, stream)
			assert.Equal(t, "error", last.data["type"])
			assert.Equal(t, "stream_cut", last.data["code"])
			assert.Contains(t, last.data["message"], "stream cut")
			assert.Contains(t, last.data, "param")
			assert.Nil(t, last.data["param"])
			assert.Equal(t, before.data["sequence_number"].(float64)+1, last.data["sequence_number"], stream)
			assert.NotContains(t, last.data, "error", "not chat's shape")

			text := metricsText(t, f.url)
			assert.Contains(t, text, "\naoai_gateway_stream_cuts_total 1\n")
		})
	}
}

// A stored response is read, listed and deleted through the gateway: requests without a body, by id.
func TestStoredResponseByID(t *testing.T) {
	f := v1Fleet(t, "eastus", "westus")
	auth := map[string]string{"api-key": gatewayKey}
	resp, answer := post(t, f.url, "/v1/responses", `{"model":"gpt-4o","input":"Say hello."}`, auth)
	require.Equal(t, http.StatusOK, resp.StatusCode, answer)
	var created struct{ ID string }
	require.NoError(t, json.Unmarshal([]byte(answer), &created), answer)
	require.NotEmpty(t, created.ID)

	for _, tc := range []struct{ method, path string }{
		{http.MethodGet, "/v1/responses/" + created.ID},
		{http.MethodGet, "/openai/v1/responses/" + created.ID + "/input_items?limit=10&order=asc"},
		{http.MethodDelete, "/v1/responses/" + created.ID},
	} {
		resp, answer := send(t, tc.method, f.url+tc.path, auth, nil)
		require.Equal(t, http.StatusOK, resp.StatusCode, "%s %s: %s", tc.method, tc.path, answer)
		assert.True(t, json.Valid([]byte(answer)), answer)
	}
	text := metricsText(t, f.url)
	for _, op := range []string{"responses", "responses.get", "responses.input_items", "responses.delete"} {
		assert.Contains(t, text, `operation="`+op+`",status="200"} 1`)
	}
	noKeyUpstream(t, f)
}
