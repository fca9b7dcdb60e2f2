package failovertest_test

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aoai-failover/failover/failovertest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// send makes one request with plain net/http and returns the answer and its body, read whole.
func send(t *testing.T, method, url string, header http.Header, body string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, strings.NewReader(body))
	require.NoError(t, err)
	req.Header = header
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, string(data)
}

// decode decodes a JSON body into a map.
func decode(t *testing.T, body string) map[string]any {
	t.Helper()
	var v map[string]any
	require.NoError(t, json.Unmarshal([]byte(body), &v), body)
	return v
}

// create makes a response on a region's v1 surface and returns its decoded body; it must succeed.
func create(t *testing.T, s *failovertest.Server, body string) map[string]any {
	t.Helper()
	resp, data := post(t, s.V1URL+"/responses", http.Header{"Api-Key": {s.Key}}, body)
	require.Equal(t, 200, resp.StatusCode, data)
	return decode(t, data)
}

// outputText is the text of a response's message item.
func outputText(t *testing.T, resp map[string]any) string {
	t.Helper()
	output := resp["output"].([]any)
	message := output[len(output)-1].(map[string]any)
	require.Equal(t, "message", message["type"])
	return message["content"].([]any)[0].(map[string]any)["text"].(string)
}

func errorCode(t *testing.T, body string) any {
	t.Helper()
	return decode(t, body)["error"].(map[string]any)["code"]
}

const hello = `{"model":"gpt-4o","input":"Hi there"}`

func TestResponsesCreateOnBothSurfaces(t *testing.T) {
	s := failovertest.NewRegion("eastus")
	defer s.Close()
	key := http.Header{"Api-Key": {s.Key}}

	resp, data := post(t, s.V1URL+"/responses", key, hello)
	require.Equal(t, 200, resp.StatusCode, data)
	assert.Equal(t, "eastus", resp.Header.Get("X-Ms-Region"))
	v := decode(t, data)
	assert.Equal(t, "response", v["object"])
	assert.Equal(t, "completed", v["status"])
	assert.Equal(t, "gpt-4o", v["model"])
	assert.Equal(t, true, v["store"])
	assert.Nil(t, v["previous_response_id"])
	assert.Equal(t, "Hello from eastus.", outputText(t, v))
	assert.Regexp(t, `^resp_`, v["id"])
	assert.Equal(t, []string{v["id"].(string)}, s.Responses())

	resp, data = post(t, s.URL+"/openai/responses?api-version=2025-04-01-preview", key, hello)
	require.Equal(t, 200, resp.StatusCode, data)
	assert.Equal(t, "gpt-4o", decode(t, data)["model"])

	for _, version := range []string{"2024-10-21", "2025-01-01-preview", "2025-03-01", "preview"} {
		resp, data = post(t, s.URL+"/openai/responses?api-version="+version, key, hello)
		assert.Equal(t, 400, resp.StatusCode, version)
		assert.JSONEq(t, `{"error":{"code":"BadRequest","message":"Azure OpenAI Responses API is enabled only for api-version 2025-03-01-preview and later"}}`, data, version)
	}
	resp, data = post(t, s.V1URL+"/responses?api-version=2025-04-01-preview", key, hello)
	assert.Equal(t, 400, resp.StatusCode, "the v1 surface refuses a dated version: %s", data)
	resp, _ = post(t, s.V1URL+"/responses", http.Header{"Api-Key": {"wrong"}}, hello)
	assert.Equal(t, 401, resp.StatusCode)

	calls := s.Calls()
	require.Len(t, calls, 8)
	assert.Equal(t, "responses", calls[0].Operation)
	assert.True(t, calls[0].V1)
	assert.Equal(t, "gpt-4o", calls[0].Deployment)
	assert.Equal(t, "responses", calls[1].Operation)
	assert.False(t, calls[1].V1)
	assert.Equal(t, "gpt-4o", calls[1].Deployment, "the classic surface reads the deployment from the body")
	assert.Equal(t, "2025-04-01-preview", calls[1].APIVersion)
	assert.Len(t, s.Responses(), 2)
}

func TestResponsesNeedTheDeployment(t *testing.T) {
	s := failovertest.NewRegion("eastus", failovertest.WithDeployments("gpt-4o"))
	defer s.Close()
	key := http.Header{"Api-Key": {s.Key}}
	body := `{"model":"o3","input":"Hi"}`
	resp, data := post(t, s.V1URL+"/responses", key, body)
	assert.Equal(t, 400, resp.StatusCode)
	assert.Equal(t, failovertest.V1DeploymentNotFound().Body, data)
	resp, data = post(t, s.URL+"/openai/responses?api-version=2025-04-01-preview", key, body)
	assert.Equal(t, 404, resp.StatusCode)
	assert.Equal(t, failovertest.DeploymentNotFound().Body, data)
	assert.Empty(t, s.Responses())
}

func TestResponsesAreStoredPerRegion(t *testing.T) {
	east, west := failovertest.NewRegion("eastus"), failovertest.NewRegion("westus")
	defer east.Close()
	defer west.Close()
	first := create(t, east, hello)
	id := first["id"].(string)
	eastKey, westKey := http.Header{"Api-Key": {east.Key}}, http.Header{"Api-Key": {west.Key}}

	resp, data := send(t, http.MethodGet, east.V1URL+"/responses/"+id, eastKey, "")
	require.Equal(t, 200, resp.StatusCode, data)
	assert.Equal(t, first, decode(t, data))
	resp, data = send(t, http.MethodGet, east.URL+"/openai/responses/"+id+"?api-version=2025-04-01-preview", eastKey, "")
	assert.Equal(t, 200, resp.StatusCode, "the classic surface reaches the same store: %s", data)

	resp, data = send(t, http.MethodGet, west.V1URL+"/responses/"+id, westKey, "")
	assert.Equal(t, 404, resp.StatusCode)
	assert.JSONEq(t, `{"error":{"message":"Response with id '`+id+`' not found.","type":"invalid_request_error","param":null,"code":null}}`, data)

	follow := `{"model":"gpt-4o","input":"And then?","previous_response_id":"` + id + `"}`
	resp, data = post(t, west.V1URL+"/responses", westKey, follow)
	assert.Equal(t, 400, resp.StatusCode)
	assert.JSONEq(t, `{"error":{"message":"Previous response with id '`+id+`' not found.","type":"invalid_request_error","param":"previous_response_id","code":"previous_response_not_found"}}`, data)
	assert.Empty(t, west.Responses())
	second := create(t, east, follow)
	assert.Equal(t, id, second["previous_response_id"])
	assert.NotEqual(t, id, second["id"])

	resp, data = send(t, http.MethodGet, east.V1URL+"/responses/"+id+"/input_items", eastKey, "")
	require.Equal(t, 200, resp.StatusCode, data)
	items := decode(t, data)
	assert.Equal(t, "list", items["object"])
	require.Len(t, items["data"], 1)
	item := items["data"].([]any)[0].(map[string]any)
	assert.Equal(t, "user", item["role"])
	assert.Equal(t, "Hi there", item["content"].([]any)[0].(map[string]any)["text"])
	assert.Regexp(t, `^msg_`, item["id"], "stored input items get ids")

	resp, data = send(t, http.MethodDelete, east.V1URL+"/responses/"+id, eastKey, "")
	require.Equal(t, 200, resp.StatusCode, data)
	assert.JSONEq(t, `{"id":"`+id+`","object":"response","deleted":true}`, data)
	resp, _ = send(t, http.MethodGet, east.V1URL+"/responses/"+id, eastKey, "")
	assert.Equal(t, 404, resp.StatusCode, "a deleted response is gone")
	assert.Equal(t, []string{second["id"].(string)}, east.Responses())

	var ops []string
	for _, c := range east.Calls() {
		ops = append(ops, c.Operation)
	}
	assert.Equal(t, []string{"responses", "responses.get", "responses.get", "responses", "responses.input_items",
		"responses.delete", "responses.get"}, ops)
	assert.Equal(t, id, east.Calls()[1].ResponseID)
}

func TestResponsesIDsDifferAcrossRegions(t *testing.T) {
	east, west := failovertest.NewRegion("eastus"), failovertest.NewRegion("westus")
	defer east.Close()
	defer west.Close()
	a, b := create(t, east, hello)["id"].(string), create(t, west, hello)["id"].(string)
	assert.NotEqual(t, a, b)
	assert.Equal(t, []string{a}, east.Responses())
	assert.Equal(t, []string{b}, west.Responses())
}

func TestResponsesNotStored(t *testing.T) {
	s := failovertest.NewRegion("eastus")
	defer s.Close()
	key := http.Header{"Api-Key": {s.Key}}
	unstored := create(t, s, `{"model":"gpt-4o","input":"Hi","store":false}`)
	assert.Equal(t, false, unstored["store"])
	assert.Empty(t, s.Responses())
	resp, _ := send(t, http.MethodGet, s.V1URL+"/responses/"+unstored["id"].(string), key, "")
	assert.Equal(t, 404, resp.StatusCode)

	msg := unstored["output"].([]any)[0].(map[string]any)["id"].(string)
	resp, data := post(t, s.V1URL+"/responses", key, `{"model":"gpt-4o","input":[{"type":"item_reference","id":"`+msg+`"}]}`)
	assert.Equal(t, 400, resp.StatusCode)
	assert.Equal(t, "input", decode(t, data)["error"].(map[string]any)["param"])
	assert.Contains(t, data, "Item with id '"+msg+"' not found.")

	stored := create(t, s, hello)
	msg = stored["output"].([]any)[0].(map[string]any)["id"].(string)
	again := create(t, s, `{"model":"gpt-4o","input":[{"type":"item_reference","id":"`+msg+`"},{"role":"user","content":"More"}]}`)
	assert.Equal(t, "completed", again["status"], "an item this region stored can be referenced")
}

func TestResponsesEncryptedReasoning(t *testing.T) {
	east, west := failovertest.NewRegion("eastus"), failovertest.NewRegion("westus")
	defer east.Close()
	defer west.Close()
	first := create(t, east, `{"model":"o4-mini","input":"Think","store":false,"include":["reasoning.encrypted_content"]}`)
	reasoning := first["output"].([]any)[0].(map[string]any)
	require.Equal(t, "reasoning", reasoning["type"])
	assert.Regexp(t, `^rs_`, reasoning["id"])
	assert.NotEmpty(t, reasoning["encrypted_content"])
	assert.Equal(t, []any{}, reasoning["summary"])

	item, err := json.Marshal(reasoning)
	require.NoError(t, err)
	next := `{"model":"o4-mini","store":false,"input":[` + string(item) + `,{"role":"user","content":"Go on"}]}`
	resp, data := post(t, west.V1URL+"/responses", http.Header{"Api-Key": {west.Key}}, next)
	assert.Equal(t, 400, resp.StatusCode)
	assert.Equal(t, "invalid_encrypted_content", errorCode(t, data))
	assert.Contains(t, data, "could not be verified.")
	assert.Equal(t, "completed", create(t, east, next)["status"], "the region that made it takes it back")

	plain := create(t, east, hello)
	assert.Len(t, plain["output"], 1, "no reasoning item unless included")
}

func TestResponsesCancel(t *testing.T) {
	s := failovertest.NewRegion("eastus")
	defer s.Close()
	key := http.Header{"Api-Key": {s.Key}}
	background := create(t, s, `{"model":"gpt-4o","input":"Hi","background":true}`)
	resp, data := send(t, http.MethodPost, s.V1URL+"/responses/"+background["id"].(string)+"/cancel", key, "")
	require.Equal(t, 200, resp.StatusCode, data)
	assert.Equal(t, background["id"], decode(t, data)["id"])

	foreground := create(t, s, hello)
	resp, data = send(t, http.MethodPost, s.V1URL+"/responses/"+foreground["id"].(string)+"/cancel", key, "")
	assert.Equal(t, 400, resp.StatusCode, data)
	resp, _ = send(t, http.MethodPost, s.V1URL+"/responses/resp_none/cancel", key, "")
	assert.Equal(t, 404, resp.StatusCode)
	assert.Equal(t, "responses.cancel", s.Calls()[1].Operation)
}

// event is one server-sent event of a Responses stream.
type event struct {
	Type string
	Data map[string]any
}

// readEvents reads a Responses stream to its end; it fails the test on a data line that is not JSON, such as
// [DONE].
func readEvents(t *testing.T, body io.Reader) ([]event, error) {
	t.Helper()
	var events []event
	var typ string
	scanner := bufio.NewScanner(body)
	for scanner.Scan() {
		line := scanner.Text()
		if name, ok := strings.CutPrefix(line, "event: "); ok {
			typ = name
		} else if data, ok := strings.CutPrefix(line, "data: "); ok {
			var v map[string]any
			require.NoError(t, json.Unmarshal([]byte(data), &v), "every data line is JSON: %s", data)
			assert.Equal(t, typ, v["type"])
			events = append(events, event{typ, v})
		}
	}
	return events, scanner.Err()
}

func stream(t *testing.T, s *failovertest.Server) (*http.Response, []event, error) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, s.V1URL+"/responses",
		strings.NewReader(`{"model":"gpt-4o","input":"Hi","stream":true}`))
	require.NoError(t, err)
	req.Header.Set("Api-Key", s.Key)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	events, err := readEvents(t, resp.Body)
	return resp, events, err
}

func TestResponsesStream(t *testing.T) {
	s := failovertest.NewRegion("eastus")
	defer s.Close()
	resp, events, err := stream(t, s)
	require.NoError(t, err)
	assert.Equal(t, "text/event-stream", resp.Header.Get("Content-Type"))
	var types []string
	var text strings.Builder
	for i, e := range events {
		types = append(types, e.Type)
		assert.Equal(t, float64(i), e.Data["sequence_number"])
		if e.Type == "response.output_text.delta" {
			text.WriteString(e.Data["delta"].(string))
		}
	}
	assert.Equal(t, []string{"response.created", "response.in_progress", "response.output_item.added",
		"response.content_part.added", "response.output_text.delta", "response.output_text.delta",
		"response.output_text.delta", "response.output_text.done", "response.content_part.done",
		"response.output_item.done", "response.completed"}, types)
	assert.Equal(t, "Hello from eastus.", text.String())
	assert.Equal(t, "in_progress", events[0].Data["response"].(map[string]any)["status"])

	final := events[len(events)-1].Data["response"].(map[string]any)
	assert.Equal(t, "completed", final["status"])
	id := final["id"].(string)
	assert.Equal(t, events[0].Data["response"].(map[string]any)["id"], id)
	assert.Equal(t, []string{id}, s.Responses())
	got, data := send(t, http.MethodGet, s.V1URL+"/responses/"+id, http.Header{"Api-Key": {s.Key}}, "")
	require.Equal(t, 200, got.StatusCode, data)
	assert.Equal(t, "Hello from eastus.", outputText(t, decode(t, data)))
	assert.True(t, s.Calls()[0].Stream)
}

func TestResponsesStreamFaults(t *testing.T) {
	s := failovertest.NewRegion("eastus")
	defer s.Close()
	s.Script(failovertest.StreamFailure(1), failovertest.Reply{StreamCutAfter: 1})

	_, events, err := stream(t, s)
	require.NoError(t, err)
	last := events[len(events)-1]
	assert.Equal(t, "error", last.Type)
	assert.Equal(t, "server_error", last.Data["code"])
	for _, e := range events {
		assert.NotEqual(t, "response.output_text.delta", e.Type, "the error comes before any text")
	}

	_, events, err = stream(t, s)
	require.Error(t, err, "the connection is cut mid-stream")
	assert.Equal(t, "response.output_text.delta", events[len(events)-1].Type)
	assert.Empty(t, s.Responses(), "an unfinished response is not stored")
}

func TestResponsesTakeScriptsAndQuota(t *testing.T) {
	s := failovertest.NewRegion("eastus", failovertest.WithQuota(failovertest.Quota{RequestsPerMinute: 2}))
	defer s.Close()
	key := http.Header{"Api-Key": {s.Key}}
	s.Script(failovertest.RateLimited(3 * time.Second))
	resp, data := post(t, s.V1URL+"/responses", key, hello)
	assert.Equal(t, 429, resp.StatusCode, data)
	assert.Equal(t, "3", resp.Header.Get("Retry-After"))
	assert.Empty(t, s.Responses())

	id := create(t, s, hello)["id"].(string)
	resp, _ = post(t, s.V1URL+"/responses", key, hello)
	assert.Equal(t, 429, resp.StatusCode, "the quota's two requests are spent")
	resp, _ = send(t, http.MethodGet, s.V1URL+"/responses/"+id, key, "")
	assert.Equal(t, 200, resp.StatusCode, "reading a stored response is not charged to the quota")

	s.Script(failovertest.InternalError())
	resp, _ = send(t, http.MethodGet, s.V1URL+"/responses/"+id, key, "")
	assert.Equal(t, 500, resp.StatusCode, "a scripted reply applies to a request by id")
	assert.Equal(t, map[int]int{200: 2, 429: 2, 500: 1}, s.Statuses())
}

func TestOpenAIServesResponses(t *testing.T) {
	s := failovertest.NewOpenAI(failovertest.WithDeployments("gpt-4o"), failovertest.WithEcho())
	defer s.Close()
	auth := http.Header{"Authorization": {"Bearer " + s.Key}}
	resp, data := post(t, s.URL+"/responses", auth, `{"model":"gpt-4o","input":[{"role":"user","content":"Echo me"}]}`)
	require.Equal(t, 200, resp.StatusCode, data)
	assert.Empty(t, resp.Header.Get("X-Ms-Region"))
	v := decode(t, data)
	assert.Equal(t, "Echo me", outputText(t, v))
	resp, _ = send(t, http.MethodGet, s.URL+"/responses/"+v["id"].(string), auth, "")
	assert.Equal(t, 200, resp.StatusCode)
	resp, data = post(t, s.URL+"/responses", auth, `{"model":"o3","input":"Hi"}`)
	assert.Equal(t, 404, resp.StatusCode)
	assert.Equal(t, "model_not_found", errorCode(t, data))
}

func TestRequestTokensOfAResponsesCreate(t *testing.T) {
	// 16 bytes of item text make 4 tokens; max_output_tokens is the completion budget.
	assert.Equal(t, 4+100, failovertest.RequestTokens([]byte(`{"model":"gpt-4o","max_output_tokens":100,"input":[{"role":"user","content":"0123456789"},{"role":"user","content":[{"type":"input_text","text":"abcdef"}]}]}`)))
	assert.Equal(t, 2, failovertest.RequestTokens([]byte(hello)), "a string input: 8 bytes")
}
