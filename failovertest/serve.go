package failovertest

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// How a fake region answers a request: the checks Azure makes, in its order, then the scripted reply.

// requestBody is what the server reads of a request body.
type requestBody struct {
	Model  string `json:"model"`
	Stream bool   `json:"stream"`
	// StreamOptions.IncludeUsage asks a chat stream for a last chunk with the usage and no choices.
	StreamOptions struct {
		IncludeUsage bool `json:"include_usage"`
	} `json:"stream_options"`
	Input json.RawMessage `json:"input"`
	// EncodingFormat is "float" (the default) or "base64" for embeddings.
	EncodingFormat string `json:"encoding_format"`
	Messages       []struct {
		Content any `json:"content"`
	} `json:"messages"`
	Prompt json.RawMessage `json:"prompt"`
	// MaxTokens, MaxCompletionTokens and N make the completion budget of RequestTokens; read leniently, so that
	// they never make a body a bad request.
	MaxTokens           json.RawMessage `json:"max_tokens"`
	MaxCompletionTokens json.RawMessage `json:"max_completion_tokens"`
	N                   json.RawMessage `json:"n"`
	// The Responses API's: input is Input above (a string or an array of items).
	PreviousResponseID string          `json:"previous_response_id"`
	Store              *bool           `json:"store"` // nil: true
	Background         bool            `json:"background"`
	Include            []string        `json:"include"`
	MaxOutputTokens    json.RawMessage `json:"max_output_tokens"`
}

// ServeHTTP answers one request the way the real service would. Its steps check the request in a fixed order
// (route, credentials, api-version on Azure's v1 surface, body, deployment, quota, then the script), so that a
// request with several faults gets the first one's answer; the call is logged, and WithOnRequest told, once its
// answer is chosen but before it is sent, so that a test learns of a request whose answer is still delayed.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	call, routed := s.route(r)
	raw, body, bodyErr := readBody(r)
	call.Model, call.Stream, call.Body = body.Model, body.Stream, raw
	if call.V1 || call.Operation == "responses" && !s.openai { // the deployment is in the body, not the path
		call.Deployment = body.Model
	}
	if len(raw) == 0 && responsesByID(call.Operation) { // a GET, DELETE or cancel has no body to parse
		bodyErr = nil
	}

	reply, refused := s.refusal(r, call, routed, bodyErr)
	var limits http.Header                         // the quota's headers; nil: none
	if !refused && responsesByID(call.Operation) { // only creates are charged to a deployment's quota
		reply = s.next(call)
	} else if !refused {
		reply, limits = s.admit(call, body)
	}
	index := s.logCall(call)
	if s.onRequest != nil {
		s.onRequest(call)
	}
	s.reply(&statusRecorder{ResponseWriter: w, server: s, index: index}, r, call, body, reply, limits)
}

// route starts the request's Call from its path, query and credentials, which differ between OpenAI and Azure's
// two surfaces. routed reports whether the method, path, operation and (on Azure's classic surface, where it is
// required) api-version name something the service serves; a request that is not routed is answered 404 whatever
// its credentials. The v1 surface's deployment, in the body, is filled in once the body is read.
func (s *Server) route(r *http.Request) (call Call, routed bool) {
	call = Call{Time: time.Now(), Header: r.Header.Clone()}
	switch {
	case s.openai:
		call.Operation, routed = strings.CutPrefix(r.URL.Path, "/v1/")
		call.Operation, call.ResponseID, routed = responsesRoute(r.Method, call.Operation, routed)
		call.Authorized = r.Header.Get("Authorization") == "Bearer "+s.Key
	case strings.HasPrefix(r.URL.Path, v1Prefix+"/"):
		call.V1 = true
		call.Operation, routed = v1Operation(r.URL.Path)
		call.Operation, call.ResponseID, routed = responsesRoute(r.Method, call.Operation, routed)
		call.APIVersion = r.URL.Query().Get("api-version")
		call.Authorized = s.v1Authorized(r)
	case strings.HasPrefix(r.URL.Path, classicResponsesPrefix):
		call.Operation, call.ResponseID, routed = responsesRoute(r.Method, strings.TrimPrefix(r.URL.Path, "/openai/"), true)
		call.APIVersion = r.URL.Query().Get("api-version")
		call.Authorized = r.Header.Get("Api-Key") == s.Key || s.bearerValid(r)
	default:
		call.Deployment, call.Operation, routed = azurePath(r.URL.Path)
		call.APIVersion = r.URL.Query().Get("api-version")
		call.Authorized = r.Header.Get("Api-Key") == s.Key || s.bearerValid(r)
	}
	routed = routed && (isResponses(call.Operation) || r.Method == http.MethodPost &&
		(call.Operation == "chat/completions" || call.Operation == "completions" || call.Operation == "embeddings")) &&
		(s.openai || call.V1 || call.APIVersion != "")
	return call, routed
}

// readBody reads the whole request body and decodes what it can: the call log keeps the body as it arrived, and
// the model and stream flag even of a body that then fails to decode. err is the read error, else the decode
// error; either makes the request a bad one.
func readBody(r *http.Request) (raw []byte, body requestBody, err error) {
	raw, readErr := io.ReadAll(r.Body)
	err = json.Unmarshal(raw, &body)
	if readErr != nil {
		err = readErr
	}
	return raw, body, err
}

// refusal is the error the real service answers a request it will not serve, checked in its order: the path,
// then the credentials, then the api-version (on the v1 surface, and for the Responses API on the classic one),
// then the body, then the deployment or model (not for a Responses request by id, which the store answers).
// refused is false when the request passes them all and goes on to the quota and the script.
func (s *Server) refusal(r *http.Request, call Call, routed bool, bodyErr error) (reply Reply, refused bool) {
	switch {
	case !routed:
		return Reply{Status: http.StatusNotFound, Body: azureError("404", "Resource not found")}, true
	case !call.Authorized:
		return s.unauthorized(r), true
	case call.V1 && !v1APIVersionOK(call.APIVersion):
		return v1APIVersionNotSupported(), true
	case isResponses(call.Operation) && !s.openai && !call.V1 && !responsesAPIVersionOK(call.APIVersion):
		return ResponsesAPIVersionNotSupported(), true
	case bodyErr != nil:
		return BadRequest("We could not parse the JSON body of your request."), true
	case responsesByID(call.Operation): // names a stored response, not a deployment: the store answers
		return Reply{}, false
	}
	return s.notFound(call)
}

// unauthorized is the 401 for missing or wrong credentials, in the words of the service the server fakes: OpenAI's
// invalid_api_key, Entra ID's answer to a request with no api-key when the region takes tokens (WithEntraID), or
// the API key's.
func (s *Server) unauthorized(r *http.Request) Reply {
	switch {
	case s.openai:
		return Reply{Status: http.StatusUnauthorized, Body: `{"error":{"message":"Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys.","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}`}
	case s.identity != nil && r.Header.Get("Api-Key") == "":
		return EntraUnauthorized()
	}
	return Unauthorized()
}

// notFound is the refusal of a model (OpenAI) or deployment (Azure) that WithDeployments left out: 404, except on
// Azure's v1 surface, which answers V1DeploymentNotFound, and answers it as well to a body that names no model (no
// deployment has an empty name). found is false when the deployment exists, or when every deployment does.
func (s *Server) notFound(call Call) (reply Reply, found bool) {
	switch {
	case call.V1 && (call.Deployment == "" || s.deployments != nil && !s.deployments[call.Deployment]):
		return V1DeploymentNotFound(), true
	case s.deployments == nil:
		return Reply{}, false
	case s.openai && !s.deployments[call.Model]:
		message, _ := json.Marshal("The model `" + call.Model + "` does not exist or you do not have access to it.")
		return Reply{Status: http.StatusNotFound, Body: fmt.Sprintf(`{"error":{"message":%s,"type":"invalid_request_error","param":null,"code":"model_not_found"}}`, message)}, true
	case !s.openai && !s.deployments[call.Deployment]:
		return DeploymentNotFound(), true
	}
	return Reply{}, false
}

// logCall counts the request and, unless WithoutCallLog, keeps its call; it returns the call's index in the log
// (-1: not kept), where statusRecorder writes the status once it is sent.
func (s *Server) logCall(call Call) (index int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests++
	index = -1
	if !s.noCallLog {
		index = len(s.calls)
		s.calls = append(s.calls, call)
	}
	return index
}

// statusRecorder records the status in the request's Call, and counts it in Statuses, just before it is sent, so
// that a client that has seen the answer also sees the status in Calls and Statuses.
type statusRecorder struct {
	http.ResponseWriter
	server *Server
	index  int
}

func (w *statusRecorder) WriteHeader(status int) {
	w.server.mu.Lock()
	w.server.statuses[status]++
	if w.index >= 0 {
		w.server.calls[w.index].Status = status
	}
	w.server.mu.Unlock()
	w.ResponseWriter.WriteHeader(status)
}

// Unwrap lets http.ResponseController reach the connection, to flush and hijack it.
func (w *statusRecorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (s *Server) next(call Call) Reply {
	s.mu.Lock()
	if len(s.script) > 0 {
		r := s.script[0]
		s.script = s.script[1:]
		s.mu.Unlock()
		return r
	}
	replier, fallback := s.replier, s.fallback
	s.mu.Unlock()
	if replier != nil {
		return replier(call)
	}
	return fallback
}

// azurePath splits /openai/deployments/{deployment}/{operation}.
func azurePath(path string) (deployment, operation string, ok bool) {
	rest, ok := strings.CutPrefix(path, "/openai/deployments/")
	if !ok {
		return "", "", false
	}
	deployment, operation, ok = strings.Cut(rest, "/")
	return deployment, operation, ok && deployment != ""
}

// wait waits for d, or forever when hang is set; it reports false when the client or the server gave up first.
func (s *Server) wait(r *http.Request, d time.Duration, hang bool) bool {
	var expired <-chan time.Time
	if !hang {
		t := time.NewTimer(d)
		defer t.Stop()
		expired = t.C
	}
	select {
	case <-expired:
		return true
	case <-r.Context().Done():
	case <-s.closing:
	}
	return false
}

// reply sends reply. limits, the quota's headers, replace the fixed rate limit headers of a success; nil keeps them.
func (s *Server) reply(w http.ResponseWriter, r *http.Request, call Call, body requestBody, reply Reply, limits http.Header) {
	if (reply.Delay > 0 || reply.Hang) && !s.wait(r, reply.Delay, reply.Hang) {
		return
	}
	if reply.Disconnect {
		if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
			conn.Close()
		}
		return
	}
	h := w.Header()
	h.Set("Apim-Request-Id", fmt.Sprintf("00000000-0000-4000-8000-%012d", s.seq.Add(1)))
	h.Set("X-Request-Id", h.Get("Apim-Request-Id"))
	if !s.openai {
		h.Set("X-Ms-Region", s.Name)
	}
	if limits != nil {
		maps.Copy(h, limits)
	} else if reply.Status == 0 || reply.Status == http.StatusOK {
		h.Set("X-Ratelimit-Remaining-Requests", "99")
		h.Set("X-Ratelimit-Remaining-Tokens", "99000")
	}
	for k, v := range reply.Header {
		h[http.CanonicalHeaderKey(k)] = v
	}
	status := max(reply.Status, http.StatusOK)
	if reply.EmptyBody {
		h.Set("Content-Length", "0")
		w.WriteHeader(status)
		return
	}
	if status == http.StatusOK && reply.Body == "" && call.Stream && call.Operation == "chat/completions" {
		s.stream(w, r, call, body, reply)
		return
	}
	data := reply.Body
	if status == http.StatusOK && data == "" && isResponses(call.Operation) {
		var streamed bool
		if status, data, streamed = s.answerResponses(w, r, call, body, reply); streamed {
			return
		}
	}
	if data == "" {
		data = s.defaultBody(call, body, reply)
	}
	if h.Get("Content-Type") == "" {
		h.Set("Content-Type", "application/json")
	}
	h.Set("Content-Length", strconv.Itoa(len(data)))
	w.WriteHeader(status)
	if reply.BodyDelay > 0 {
		_ = http.NewResponseController(w).Flush()
		if !s.wait(r, reply.BodyDelay, false) {
			return
		}
	}
	_, _ = w.Write([]byte(data))
}
