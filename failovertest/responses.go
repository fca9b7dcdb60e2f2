package failovertest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"
)

// The Responses API, as a region serves it on both surfaces (POST {V1URL}/responses, and on the classic one POST
// {URL}/openai/responses?api-version=2025-03-01-preview or later, the deployment in the body's model) and a fake
// OpenAI API serves it under /v1/responses. What makes it differ from chat is state: a response is stored in the
// server that made it (unless the request says store: false), and only that server can retrieve it, continue from
// it (previous_response_id), or read its encrypted reasoning. A failover client must keep such requests where
// their state is; these fakes refuse them elsewhere as the real service does, so that it can be tested.
//
// Requests by id (GET, DELETE, cancel, input_items) skip the deployment check and the quota, which charge only
// creates, but take scripted replies like any other request. A reply with a Status other than 200, or a Body,
// replaces the service's answer; any other reply (the default) is answered from the server's store, and a
// create's text follows Reply.Content and WithEcho as chat's does. Of the Reply fields that shape a stream,
// StreamErrorAt, StreamCutAfter and BodyDelay apply to a streamed create (see streamResponse).

// classicResponsesPrefix is where a region's classic surface serves the Responses API: no deployment in the path.
const classicResponsesPrefix = "/openai/responses"

// responsesRoute names a Responses API request by its method and path below the surface's root (e.g.
// "responses/resp_1/cancel"), and the response id in it. Other operations pass through as they came, with ok
// left as routed; a Responses path with the wrong method is not routed.
func responsesRoute(method, path string, routed bool) (operation, id string, ok bool) {
	rest, found := strings.CutPrefix(path, "responses")
	if !found || rest != "" && rest[0] != '/' {
		return path, "", routed
	}
	if rest == "" {
		return "responses", "", routed && method == http.MethodPost
	}
	id, sub, _ := strings.Cut(rest[1:], "/")
	want := map[string]struct{ op, method string }{
		"":            {"responses.get", http.MethodGet},
		"cancel":      {"responses.cancel", http.MethodPost},
		"input_items": {"responses.input_items", http.MethodGet},
	}[sub]
	if sub == "" && method == http.MethodDelete {
		want = struct{ op, method string }{"responses.delete", http.MethodDelete}
	}
	return want.op, id, routed && id != "" && want.op != "" && method == want.method
}

// isResponses reports whether operation is one of the Responses API's.
func isResponses(operation string) bool {
	return operation == "responses" || responsesByID(operation)
}

// responsesByID reports whether operation names a stored response (every Responses operation but a create).
func responsesByID(operation string) bool { return strings.HasPrefix(operation, "responses.") }

// responsesAPIVersionOK reports whether the classic surface serves the Responses API at version: a preview
// version dated 2025-03-01 or later. GA versions, and older previews, are refused.
func responsesAPIVersionOK(version string) bool {
	date, preview := strings.CutSuffix(version, "-preview")
	t, err := time.Parse(time.DateOnly, date)
	return preview && err == nil && !t.Before(time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC))
}

// ResponsesAPIVersionNotSupported answers 400 as a region's classic surface does to a Responses API request with
// an api-version older than 2025-03-01-preview, or a GA one. A fake region answers it by itself. The message is as
// users of the real service have quoted it (Aider-AI/aider issue 4029, through litellm); the code is a guess.
func ResponsesAPIVersionNotSupported() Reply {
	return Reply{Status: http.StatusBadRequest, Body: azureError("BadRequest", "Azure OpenAI Responses API is enabled only for api-version 2025-03-01-preview and later")}
}

// invalidRequest is an OpenAI-shaped invalid_request_error; param and code are JSON null when empty.
func invalidRequest(status int, message, param, code string) (int, string) {
	null := func(s string) any {
		if s == "" {
			return nil
		}
		return s
	}
	data, _ := json.Marshal(map[string]any{"error": map[string]any{"message": message,
		"type": "invalid_request_error", "param": null(param), "code": null(code)}})
	return status, string(data)
}

// responseNotFound is the 404 for an id the server has not stored. Its shape is OpenAI's invalid_request_error
// with the message OpenAI is believed to send; neither is confirmed for Azure.
func responseNotFound(id string) (int, string) {
	return invalidRequest(http.StatusNotFound, fmt.Sprintf("Response with id '%s' not found.", id), "", "")
}

// responseObject is a Response as the service answers it.
type responseObject struct {
	ID                 string         `json:"id"`
	Object             string         `json:"object"`
	CreatedAt          int64          `json:"created_at"`
	Status             string         `json:"status"`
	Background         bool           `json:"background"`
	Error              any            `json:"error"`
	IncompleteDetails  any            `json:"incomplete_details"`
	Instructions       any            `json:"instructions"`
	MaxOutputTokens    any            `json:"max_output_tokens"`
	Model              string         `json:"model"`
	Output             []any          `json:"output"`
	ParallelToolCalls  bool           `json:"parallel_tool_calls"`
	PreviousResponseID *string        `json:"previous_response_id"`
	Reasoning          map[string]any `json:"reasoning"`
	Store              bool           `json:"store"`
	Temperature        float64        `json:"temperature"`
	Text               map[string]any `json:"text"`
	ToolChoice         string         `json:"tool_choice"`
	Tools              []any          `json:"tools"`
	TopP               float64        `json:"top_p"`
	Truncation         string         `json:"truncation"`
	Usage              *responseUsage `json:"usage"`
	User               any            `json:"user"`
	Metadata           map[string]any `json:"metadata"`
}

type responseUsage struct {
	InputTokens         int            `json:"input_tokens"`
	InputTokensDetails  map[string]int `json:"input_tokens_details"`
	OutputTokens        int            `json:"output_tokens"`
	OutputTokensDetails map[string]int `json:"output_tokens_details"`
	TotalTokens         int            `json:"total_tokens"`
}

// answerResponses answers a Responses API request whose reply left the answer to the service: from the store for
// a request by id, and for a create a new response, or the refusal of what it references. streamed reports that
// it answered a streamed create itself; otherwise the caller sends status and data.
func (s *Server) answerResponses(w http.ResponseWriter, r *http.Request, call Call, body requestBody, reply Reply) (status int, data string, streamed bool) {
	if call.Operation != "responses" {
		status, data = s.stored.answer(call.Operation, call.ResponseID, r.URL.Query().Get("order"))
		return status, data, false
	}
	input := responseInput(body.Input)
	if status, data, refused := s.stored.check(body, input); refused {
		return status, data, false
	}
	resp, message := s.newResponse(call, body, reply, input)
	if call.Stream {
		s.streamResponse(w, r, resp, message, input, reply)
		return 0, "", true
	}
	s.keep(resp, input)
	out, _ := json.Marshal(resp)
	return http.StatusOK, string(out), false
}

// keep stores resp unless its request said store: false.
func (s *Server) keep(resp responseObject, input []map[string]any) {
	if resp.Store {
		s.stored.put(resp, input)
	}
}

// newResponse makes the completed response to a create, and returns its message item apart, for a stream.
func (s *Server) newResponse(call Call, body requestBody, reply Reply, input []map[string]any) (responseObject, map[string]any) {
	model := call.Model
	if model == "" {
		model = call.Deployment
	}
	text := s.responseText(reply, input)
	message := map[string]any{"type": "message", "id": s.stored.newID("msg"), "status": "completed", "role": "assistant",
		"content": []any{map[string]any{"type": "output_text", "text": text, "annotations": []any{}}}}
	var output []any
	if slices.Contains(body.Include, "reasoning.encrypted_content") {
		id := s.stored.newID("rs")
		output = append(output, map[string]any{"type": "reasoning", "id": id, "encrypted_content": s.stored.encrypt(id), "summary": []any{}})
	}
	output = append(output, message)
	in := max(len(call.Body)/4, 1) // a rough count, as a tokenizer is out of scope
	out := len(strings.Fields(text))
	resp := responseObject{ID: s.stored.newID("resp"), Object: "response", CreatedAt: time.Now().Unix(), Status: "completed",
		Background: body.Background, Model: model, Output: output, ParallelToolCalls: true,
		Reasoning: map[string]any{"effort": nil, "summary": nil}, Store: body.Store == nil || *body.Store,
		Temperature: 1, Text: map[string]any{"format": map[string]any{"type": "text"}}, ToolChoice: "auto", Tools: []any{},
		TopP: 1, Truncation: "disabled", Metadata: map[string]any{},
		Usage: &responseUsage{InputTokens: in, InputTokensDetails: map[string]int{"cached_tokens": 0}, OutputTokens: out,
			OutputTokensDetails: map[string]int{"reasoning_tokens": 0}, TotalTokens: in + out}}
	if body.PreviousResponseID != "" {
		resp.PreviousResponseID = &body.PreviousResponseID
	}
	return resp, message
}

// responseText is the assistant's text: Reply.Content, or with WithEcho the text of the last input item, or
// "Hello from <name>.".
func (s *Server) responseText(reply Reply, input []map[string]any) string {
	if reply.Content != "" || !s.echo || len(input) == 0 {
		return s.content(reply, requestBody{})
	}
	switch c := input[len(input)-1]["content"].(type) {
	case string:
		return c
	case []any:
		var text strings.Builder
		for _, part := range c {
			if p, ok := part.(map[string]any); ok {
				text.WriteString(fmt.Sprint(p["text"]))
			}
		}
		return text.String()
	}
	return s.content(reply, requestBody{})
}

// responseInput lists a create's input as items: a string is one user message, as the service records it.
func responseInput(raw json.RawMessage) []map[string]any {
	var text string
	if json.Unmarshal(raw, &text) == nil {
		return []map[string]any{{"type": "message", "role": "user",
			"content": []any{map[string]any{"type": "input_text", "text": text}}}}
	}
	var items []map[string]any
	_ = json.Unmarshal(raw, &items)
	return items
}
