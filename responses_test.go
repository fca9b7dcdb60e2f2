package failover_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aoai-failover/failover"
	"github.com/aoai-failover/failover/failovertest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// responsesCall sends method path (below a base URL the client ignores) with body through the client as a
// transport.
func responsesCall(t *testing.T, client *failover.Client, method, path, body string) *http.Response {
	t.Helper()
	var r io.Reader = http.NoBody
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, "https://caller.example"+path, r)
	require.NoError(t, err)
	resp, err := transportClient(client).Do(req)
	require.NoError(t, err)
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// responseID decodes a response object's id from a JSON answer.
func responseID(t *testing.T, resp *http.Response) string {
	t.Helper()
	body := readAll(t, resp)
	require.Equal(t, http.StatusOK, resp.StatusCode, "answer: %s", body)
	var r struct {
		ID string `json:"id"`
	}
	require.NoError(t, json.Unmarshal([]byte(body), &r))
	require.NotEmpty(t, r.ID)
	return r.ID
}

// operations lists the operations a fake region was asked for, in order.
func operations(s *failovertest.Server) []string {
	var ops []string
	for _, c := range s.Calls() {
		ops = append(ops, c.Operation)
	}
	return ops
}

// TestResponsesCreateFailsOverOnBothSurfaces: a create goes past a throttled region to the next, on Azure's v1
// surface and on the classic one, where it goes to /openai/responses with an api-version new enough for the
// Responses API although the region is configured with a GA one for chat.
func TestResponsesCreateFailsOverOnBothSurfaces(t *testing.T) {
	servers := startRegions(t, []string{"eastus", "westus"})
	east, west := servers[0], servers[1]
	regions := []failover.Region{
		{Name: east.Name, Endpoint: east.V1URL, APIKey: east.Key},
		{Name: west.Name, Endpoint: west.URL, APIKey: west.Key, APIVersion: "2024-10-21"},
	}
	client := newClient(t, regions)
	east.Script(failovertest.RateLimited(30 * time.Second))

	resp := responsesCall(t, client, http.MethodPost, "/openai/v1/responses", `{"input":"hi","model":"gpt-4o"}`)
	id := responseID(t, resp)
	assert.Equal(t, []string{id}, west.Responses(), "stored in the region that made it")
	require.Len(t, west.Calls(), 1)
	assert.Equal(t, "responses", west.Calls()[0].Operation)
	assert.Equal(t, "gpt-4o", west.Calls()[0].Deployment)
	assert.Empty(t, east.Responses())
}

// TestResponsesFollowUpGoesWhereItsStateIs: once a response was made in the second region, everything that
// names it (a follow-up create with previous_response_id, GET, input_items, DELETE) goes there, although the
// first region is healthy again; the first region is never asked.
func TestResponsesFollowUpGoesWhereItsStateIs(t *testing.T) {
	servers := startRegions(t, []string{"eastus", "westus"})
	east, west := servers[0], servers[1]
	client := newClient(t, regionsOf(servers...), fixedBackoff(time.Nanosecond))
	east.Script(failovertest.Unavailable()) // its rest is over at once; the create goes to westus
	id := responseID(t, responsesCall(t, client, http.MethodPost, "/v1/responses", `{"model":"gpt-4o","input":"hi"}`))
	require.Len(t, east.Calls(), 1)

	follow := responsesCall(t, client, http.MethodPost, "/v1/responses",
		`{"model":"gpt-4o","input":"and then?","previous_response_id":"`+id+`"}`)
	second := responseID(t, follow)
	got := responsesCall(t, client, http.MethodGet, "/openai/v1/responses/"+second, "")
	assert.Equal(t, second, responseID(t, got))
	items := responsesCall(t, client, http.MethodGet, "/v1/responses/"+id+"/input_items?limit=5", "")
	assert.Equal(t, http.StatusOK, items.StatusCode)
	gone := responsesCall(t, client, http.MethodDelete, "/v1/responses/"+id, "")
	assert.Equal(t, http.StatusOK, gone.StatusCode)

	assert.Len(t, east.Calls(), 1, "the first region, first in order and healthy, cannot know these ids")
	assert.Equal(t, []string{"responses", "responses", "responses.get", "responses.input_items", "responses.delete"},
		operations(west))
}

// TestResponsesStateInARestingRegionIsUnavailable: when the region that holds a response rests, a request that
// names it is answered 503 with Retry-After and the typed error, and never goes to a region that cannot know it.
func TestResponsesStateInARestingRegionIsUnavailable(t *testing.T) {
	servers := startRegions(t, []string{"eastus", "westus"})
	east, west := servers[0], servers[1]
	client := newClient(t, regionsOf(servers...), failover.WithMaxWait(0))
	id := responseID(t, responsesCall(t, client, http.MethodPost, "/v1/responses", `{"model":"gpt-4o","input":"hi"}`))
	require.Equal(t, []string{id}, east.Responses())

	east.Script(failovertest.Unavailable(), failovertest.Unavailable())
	follow := responsesCall(t, client, http.MethodPost, "/v1/responses",
		`{"model":"gpt-4o","input":"more","previous_response_id":"`+id+`"}`)
	assert.Equal(t, http.StatusServiceUnavailable, follow.StatusCode)
	assert.NotEmpty(t, follow.Header.Get("Retry-After"))
	assert.Equal(t, "false", follow.Header.Get("X-Should-Retry"))
	code, message := answerErrorBody(t, follow)
	assert.Equal(t, "stored_state_unavailable", code)
	assert.Contains(t, message, "eastus")

	get := responsesCall(t, client, http.MethodGet, "/v1/responses/"+id, "")
	assert.Equal(t, http.StatusServiceUnavailable, get.StatusCode, "eastus answered 503 again")
	code, _ = answerErrorBody(t, get)
	assert.Equal(t, "stored_state_unavailable", code)
	assert.Empty(t, west.Calls(), "westus cannot know the id")
}

// TestResponsesUnknownIDIsSought: a client that did not see a response made (another replica made it, or it was
// forgotten) finds it by asking the regions in order; the "not found" of a region that lacks it is not the answer.
func TestResponsesUnknownIDIsSought(t *testing.T) {
	servers := startRegions(t, []string{"eastus", "westus"})
	east, west := servers[0], servers[1]
	maker := newClient(t, []failover.Region{regionsOf(servers...)[1]})
	id := responseID(t, responsesCall(t, maker, http.MethodPost, "/v1/responses", `{"model":"gpt-4o","input":"hi"}`))

	client := newClient(t, regionsOf(servers...))
	follow := responsesCall(t, client, http.MethodPost, "/v1/responses",
		`{"model":"gpt-4o","input":"more","previous_response_id":"`+id+`"}`)
	responseID(t, follow)
	assert.Equal(t, []string{"responses"}, operations(east), "asked first, it answered previous_response_not_found")
	assert.Len(t, west.Responses(), 2)

	got := responsesCall(t, client, http.MethodGet, "/v1/responses/"+id, "")
	assert.Equal(t, id, responseID(t, got))
	assert.Len(t, east.Calls(), 1, "the follow-up taught the client where the first response is: no second search")

	missing := responsesCall(t, client, http.MethodGet, "/v1/responses/resp_nowhere", "")
	assert.Equal(t, http.StatusNotFound, missing.StatusCode, "no region has it: the last one's 404")
}

// TestResponsesStreamFailsOverBeforeItsFirstDelta: a typed event stream that fails before any output goes to the
// next region unseen; one that completes passes through whole, ends cleanly without [DONE], and teaches the
// client where the response is stored.
func TestResponsesStreamFailsOverBeforeItsFirstDelta(t *testing.T) {
	servers := startRegions(t, []string{"eastus", "westus"})
	east, west := servers[0], servers[1]
	client := newClient(t, regionsOf(servers...))
	east.Script(failovertest.StreamFailure(1))

	resp := responsesCall(t, client, http.MethodPost, "/v1/responses", `{"model":"gpt-4o","input":"hi","stream":true}`)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	events := failover.NewEventReader(resp.Body)
	var names []string
	var text strings.Builder
	var id string
	for {
		event, err := events.Next()
		if err == io.EOF {
			break
		}
		require.NoError(t, err)
		name, data := typedEvent(event)
		if name == "" {
			continue
		}
		names = append(names, name)
		var payload struct {
			Delta    string `json:"delta"`
			Response struct {
				ID string `json:"id"`
			} `json:"response"`
		}
		require.NoError(t, json.Unmarshal(data, &payload), string(event))
		if name == "response.output_text.delta" {
			text.WriteString(payload.Delta)
		}
		if name == "response.completed" {
			id = payload.Response.ID
		}
	}
	assert.Equal(t, "response.created", names[0])
	assert.Equal(t, "response.completed", names[len(names)-1])
	assert.NotEmpty(t, text.String())
	assert.NotContains(t, names, "error", "the failed stream was never seen")
	require.Equal(t, []string{id}, west.Responses())

	before := len(east.Calls())
	got := responsesCall(t, client, http.MethodGet, "/v1/responses/"+id, "")
	assert.Equal(t, id, responseID(t, got))
	assert.Len(t, east.Calls(), before, "learned from the stream's events")
}

// typedEvent is the name and data of a typed event.
func typedEvent(event []byte) (name string, data []byte) {
	for line := range strings.SplitSeq(string(event), "\n") {
		if v, ok := strings.CutPrefix(line, "event:"); ok {
			name = strings.TrimSpace(v)
		}
		if v, ok := strings.CutPrefix(line, "data:"); ok {
			data = []byte(strings.TrimSpace(v))
		}
	}
	return name, data
}

// TestResponsesStreamCutAfterOutputIsAnError: a typed stream cut after its first delta ends with ErrStreamCut,
// never with a clean end that would pass for a complete answer.
func TestResponsesStreamCutAfterOutputIsAnError(t *testing.T) {
	for name, reply := range map[string]failovertest.Reply{
		"connection cut": {StreamCutAfter: 1},
		"error event":    failovertest.StreamFailure(2),
	} {
		t.Run(name, func(t *testing.T) {
			servers := startRegions(t, []string{"eastus", "westus"})
			client := newClient(t, regionsOf(servers...))
			servers[0].Script(reply)
			resp := responsesCall(t, client, http.MethodPost, "/v1/responses", `{"model":"gpt-4o","input":"hi","stream":true}`)
			require.Equal(t, http.StatusOK, resp.StatusCode)
			data, err := io.ReadAll(resp.Body)
			require.ErrorIs(t, err, failover.ErrStreamCut)
			assert.Contains(t, string(data), "response.output_text.delta")
			assert.NotContains(t, string(data), "response.completed")
			assert.Empty(t, servers[1].Calls(), "after output, a stream does not move")
		})
	}
}

// TestModelListIsTheConfiguredModels: GET /models is answered from the regions' configured models, in every
// shape, without asking a region.
func TestModelListIsTheConfiguredModels(t *testing.T) {
	servers := startRegions(t, []string{"eastus", "westus"})
	regions := regionsOf(servers...)
	regions[0].Deployments = map[string]string{"gpt-4o": "prod-4o", "text-embedding-3-small": ""}
	regions[1].Deployments = map[string]string{"gpt-4o": "", "o4-mini": ""}
	client := newClient(t, regions)
	for _, path := range []string{"/v1/models", "/openai/v1/models", "/openai/models?api-version=2024-10-21"} {
		resp := responsesCall(t, client, http.MethodGet, path, "")
		require.Equal(t, http.StatusOK, resp.StatusCode)
		var list struct {
			Object string `json:"object"`
			Data   []struct {
				ID     string `json:"id"`
				Object string `json:"object"`
			} `json:"data"`
		}
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&list))
		var ids []string
		for _, m := range list.Data {
			ids = append(ids, m.ID)
			assert.Equal(t, "model", m.Object)
		}
		assert.Equal(t, "list", list.Object)
		assert.Equal(t, []string{"gpt-4o", "o4-mini", "text-embedding-3-small"}, ids, path)
	}
	assert.Zero(t, servers[0].Requests()+servers[1].Requests())
}

// TestStoredStateErrorIsTyped: the typed error of a request whose state's region rests matches both
// ErrStoredStateUnavailable and ErrExhausted, and names the region.
func TestStoredStateErrorIsTyped(t *testing.T) {
	err := error(&failover.ExhaustedError{HeldBy: "eastus", RetryAt: time.Now().Add(time.Second)})
	assert.ErrorIs(t, err, failover.ErrStoredStateUnavailable)
	assert.ErrorIs(t, err, failover.ErrExhausted)
	assert.NotErrorIs(t, &failover.ExhaustedError{}, failover.ErrStoredStateUnavailable)
	a := failover.AnswerError(context.Background(), err)
	assert.Equal(t, http.StatusServiceUnavailable, a.Status)
	assert.False(t, errors.Is(nil, failover.ErrStoredStateUnavailable))
}

// TestDeletedResponseIsForgotten: once a response is deleted, the client no longer sends requests about it to
// its region as if it were there: a later GET seeks it, finds it nowhere, and answers the region's 404.
func TestDeletedResponseIsForgotten(t *testing.T) {
	servers := startRegions(t, []string{"eastus", "westus"})
	east, west := servers[0], servers[1]
	client := newClient(t, regionsOf(servers...), fixedBackoff(time.Nanosecond))
	east.Script(failovertest.Unavailable())
	id := responseID(t, responsesCall(t, client, http.MethodPost, "/v1/responses", `{"model":"gpt-4o","input":"hi"}`))
	gone := responsesCall(t, client, http.MethodDelete, "/v1/responses/"+id, "")
	require.Equal(t, http.StatusOK, gone.StatusCode)

	again := responsesCall(t, client, http.MethodGet, "/v1/responses/"+id, "")
	assert.Equal(t, http.StatusNotFound, again.StatusCode)
	assert.Equal(t, []string{"responses", "responses.get"}, operations(east), "sought again, from the first region")
	assert.Equal(t, []string{"responses", "responses.delete", "responses.get"}, operations(west))
}
