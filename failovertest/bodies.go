package failovertest

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// contentFilterResults is what Azure attaches to prompts and choices when nothing was filtered.
var contentFilterResults = json.RawMessage(`{"hate":{"filtered":false,"severity":"safe"},"self_harm":{"filtered":false,"severity":"safe"},"sexual":{"filtered":false,"severity":"safe"},"violence":{"filtered":false,"severity":"safe"}}`)

type promptFilterResult struct {
	PromptIndex          int             `json:"prompt_index"`
	ContentFilterResults json.RawMessage `json:"content_filter_results"`
}

type tokenUsage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens,omitempty"`
	TotalTokens      int `json:"total_tokens"`
}

type chatMessage struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

type chatChoice struct {
	Index                int             `json:"index"`
	FinishReason         string          `json:"finish_reason"`
	Logprobs             any             `json:"logprobs"`
	Message              chatMessage     `json:"message"`
	ContentFilterResults json.RawMessage `json:"content_filter_results,omitempty"`
}

type chatCompletion struct {
	ID                  string               `json:"id"`
	Object              string               `json:"object"`
	Created             int64                `json:"created"`
	Model               string               `json:"model"`
	SystemFingerprint   string               `json:"system_fingerprint"`
	PromptFilterResults []promptFilterResult `json:"prompt_filter_results,omitempty"`
	Choices             []chatChoice         `json:"choices"`
	Usage               tokenUsage           `json:"usage"`
}

// defaultBody is the JSON answer for a reply without a Body.
func (s *Server) defaultBody(call Call, body requestBody, reply Reply) string {
	status := max(reply.Status, http.StatusOK)
	if status != http.StatusOK && s.openai {
		return fmt.Sprintf(`{"error":{"message":%q,"type":"server_error","param":null,"code":null}}`, http.StatusText(status))
	}
	if status != http.StatusOK {
		return azureError(strconv.Itoa(status), http.StatusText(status))
	}
	model := call.Model
	if model == "" {
		model = call.Deployment
	}
	promptTokens := len(call.Body) / 4 // a rough count, as a tokenizer is out of scope
	content := s.content(reply, body)
	var v any
	switch call.Operation {
	case "embeddings":
		inputs := embeddingInputs(body.Input)
		data := make([]any, len(inputs))
		for i, in := range inputs {
			var embedding any = vector(in)
			if body.EncodingFormat == "base64" { // little-endian float32s, as the service sends them
				embedding = base64Vector(vector(in))
			}
			data[i] = map[string]any{"object": "embedding", "index": i, "embedding": embedding}
		}
		v = map[string]any{"object": "list", "model": model, "data": data,
			"usage": tokenUsage{PromptTokens: promptTokens, TotalTokens: promptTokens}}
	case "completions":
		v = map[string]any{"id": s.id("cmpl"), "object": "text_completion", "created": time.Now().Unix(), "model": model,
			"choices": []any{map[string]any{"index": 0, "text": content, "finish_reason": "stop", "logprobs": nil}},
			"usage":   usage(promptTokens, content)}
	default:
		c := chatCompletion{ID: s.id("chatcmpl"), Object: "chat.completion", Created: time.Now().Unix(), Model: model,
			SystemFingerprint: "fp_failovertest",
			Choices: []chatChoice{{FinishReason: "stop", Message: chatMessage{Role: "assistant", Content: content},
				ContentFilterResults: contentFilterResults}},
			Usage: usage(promptTokens, content)}
		if !s.openai {
			c.PromptFilterResults = []promptFilterResult{{ContentFilterResults: contentFilterResults}}
		}
		v = c
	}
	data, _ := json.Marshal(v)
	return string(data)
}

func (s *Server) id(prefix string) string {
	return fmt.Sprintf("%s-%s-%d", prefix, s.Name, s.seq.Add(1))
}

func (s *Server) content(reply Reply, body requestBody) string {
	if reply.Content != "" {
		return reply.Content
	}
	if s.echo && len(body.Messages) > 0 {
		return fmt.Sprint(body.Messages[len(body.Messages)-1].Content)
	}
	return "Hello from " + s.Name + "."
}

func usage(promptTokens int, content string) tokenUsage {
	completion := len(strings.Fields(content))
	return tokenUsage{PromptTokens: promptTokens, CompletionTokens: completion, TotalTokens: promptTokens + completion}
}

// embeddingInputs lists the inputs of an embeddings request: a string, or an array of strings or token arrays.
func embeddingInputs(raw json.RawMessage) []string {
	var one string
	if json.Unmarshal(raw, &one) == nil {
		return []string{one}
	}
	var many []json.RawMessage
	if json.Unmarshal(raw, &many) != nil || len(many) == 0 {
		return []string{string(raw)}
	}
	out := make([]string, len(many))
	for i, m := range many {
		if json.Unmarshal(m, &out[i]) != nil {
			out[i] = string(m) // token arrays stand for themselves
		}
	}
	return out
}

// vector is a small embedding that depends only on the input, so tests can compare answers across regions.
func vector(input string) []float64 {
	h := fnv.New64a()
	h.Write([]byte(input))
	seed := h.Sum64()
	v := make([]float64, 8)
	for i := range v {
		seed = seed*6364136223846793005 + 1442695040888963407
		v[i] = float64(int64(seed>>11)%2000-1000) / 1000
	}
	return v
}

// base64Vector encodes v as the service's base64 embedding format: float32s, little-endian.
func base64Vector(v []float64) string {
	raw := make([]byte, 0, 4*len(v))
	for _, f := range v {
		raw = binary.LittleEndian.AppendUint32(raw, math.Float32bits(float32(f)))
	}
	return base64.StdEncoding.EncodeToString(raw)
}

// streamErrorEvent is what the service sends when an answer fails mid-stream.
const streamErrorEvent = `{"error":{"message":"The server had an error while processing your request. Sorry about that!","type":"server_error","param":null,"code":null}}`

// startStream sends a stream's headers and, for reply.BodyDelay, holds its events back; ok is false when the
// client or the server gave up meanwhile.
func (s *Server) startStream(w http.ResponseWriter, r *http.Request, reply Reply) (rc *http.ResponseController, ok bool) {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	rc = http.NewResponseController(w)
	if reply.BodyDelay > 0 {
		_ = rc.Flush()
		if !s.wait(r, reply.BodyDelay, false) {
			return rc, false
		}
	}
	return rc, true
}

// stream answers a streaming chat completion with server-sent events, word by word, as Azure does: a first event
// with the prompt filter results and no choices, a role event, content events, a finish event, then [DONE].
func (s *Server) stream(w http.ResponseWriter, r *http.Request, call Call, body requestBody, reply Reply) {
	rc, ok := s.startStream(w, r, reply)
	if !ok {
		return
	}
	id, created := s.id("chatcmpl"), time.Now().Unix()
	model := call.Model
	if model == "" {
		model = call.Deployment
	}
	send := func(v any) {
		data, _ := json.Marshal(v)
		fmt.Fprintf(w, "data: %s\n\n", data)
		_ = rc.Flush()
	}
	chunk := func(delta map[string]any, finish any) map[string]any {
		return map[string]any{"id": id, "object": "chat.completion.chunk", "created": created, "model": model,
			"choices": []any{map[string]any{"index": 0, "delta": delta, "finish_reason": finish}}}
	}
	if !s.openai {
		send(map[string]any{"id": "", "object": "", "created": 0, "model": "", "choices": []any{},
			"prompt_filter_results": []promptFilterResult{{ContentFilterResults: contentFilterResults}}})
	}
	send(chunk(map[string]any{"role": "assistant", "content": ""}, nil))
	words := strings.SplitAfter(s.content(reply, body), " ")
	for i, word := range words {
		if reply.StreamErrorAt > 0 && i == reply.StreamErrorAt-1 {
			fmt.Fprint(w, "data: "+streamErrorEvent+"\n\n")
			_ = rc.Flush()
			return
		}
		if reply.StreamCutAfter > 0 && i == reply.StreamCutAfter {
			if conn, _, err := rc.Hijack(); err == nil {
				conn.Close()
			}
			return
		}
		if reply.StreamStallAfter > 0 && i == reply.StreamStallAfter && !s.wait(r, reply.StreamStall, reply.StreamStall == 0) {
			return
		}
		if reply.StreamMalformedAt > 0 && i == reply.StreamMalformedAt-1 {
			fmt.Fprintf(w, "data: {\"id\":%q,\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"cont\n\n", id)
			_ = rc.Flush()
			continue
		}
		send(chunk(map[string]any{"content": word}, nil))
	}
	send(chunk(map[string]any{}, "stop"))
	if body.StreamOptions.IncludeUsage { // as the service does: a last chunk with no choices
		send(map[string]any{"id": id, "object": "chat.completion.chunk", "created": created, "model": model,
			"choices": []any{}, "usage": usage(0, s.content(reply, body))})
	}
	if !reply.NoDone {
		fmt.Fprint(w, "data: [DONE]\n\n")
	}
	_ = rc.Flush()
}
