package failovertest

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
)

// responseStore holds what one server made of the Responses API: the responses it stored, the items in them, and
// the key that marks its encrypted reasoning. Each server has its own, as each Azure resource has; nothing is
// shared between servers, which is the point.
type responseStore struct {
	prefix string // random, so that ids differ across servers; it encodes nothing
	secret []byte // random; encrypted reasoning carries it, so that only this server accepts it
	seq    atomic.Int64

	mu        sync.Mutex
	responses map[string]storedResponse
	order     []string        // ids stored, in creation order
	items     map[string]bool // ids of the items (input and output) of stored responses
}

type storedResponse struct {
	response responseObject
	input    []map[string]any
}

func (st *responseStore) init() {
	var b [6]byte
	_, _ = rand.Read(b[:])
	st.prefix = hex.EncodeToString(b[:])
	st.secret = make([]byte, 16)
	_, _ = rand.Read(st.secret)
	st.responses = make(map[string]storedResponse)
	st.items = make(map[string]bool)
}

// newID is a new id of the kind ("resp", "msg", "rs"), unique to this server.
func (st *responseStore) newID(kind string) string {
	return fmt.Sprintf("%s_%s%08d", kind, st.prefix, st.seq.Add(1))
}

// encrypt is the encrypted_content of reasoning item id: opaque to a client, and only this server's verify takes
// it. It is not encryption, only a mark; nothing in it is secret.
func (st *responseStore) encrypt(id string) string {
	return base64.StdEncoding.EncodeToString(append(slices.Clone(st.secret), id...))
}

func (st *responseStore) verify(content string) bool {
	raw, err := base64.StdEncoding.DecodeString(content)
	return err == nil && bytes.HasPrefix(raw, st.secret)
}

// put stores resp and its input, giving an id to each input item that came without one, as the service does.
func (st *responseStore) put(resp responseObject, input []map[string]any) {
	st.mu.Lock()
	defer st.mu.Unlock()
	for _, item := range input {
		if _, ok := item["id"].(string); !ok {
			item["id"] = st.newID("msg")
		}
		st.items[item["id"].(string)] = true
	}
	for _, item := range resp.Output {
		st.items[item.(map[string]any)["id"].(string)] = true
	}
	st.responses[resp.ID] = storedResponse{response: resp, input: input}
	st.order = append(st.order, resp.ID)
}

// check refuses a create that references what this server has not stored: the previous response, an item by id,
// or reasoning encrypted elsewhere. refused is false when it references nothing, or only what is here.
//
// The bodies are as users of the real service have quoted them: previous_response_not_found's code and message
// (maximhq/bifrost issue 2441; the type and param are a guess), the missing item's (router-for-me/CLIProxyAPI
// issue 2381) and invalid_encrypted_content's (openai/codex issue 8145), all from OpenAI; that Azure answers the
// same is assumed.
func (st *responseStore) check(body requestBody, input []map[string]any) (status int, data string, refused bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if id := body.PreviousResponseID; id != "" {
		if _, ok := st.responses[id]; !ok {
			status, data = invalidRequest(http.StatusBadRequest, fmt.Sprintf("Previous response with id '%s' not found.", id),
				"previous_response_id", "previous_response_not_found")
			return status, data, true
		}
	}
	for _, item := range input {
		if content, ok := item["encrypted_content"].(string); ok && item["type"] == "reasoning" {
			if !st.verify(content) {
				status, data = invalidRequest(http.StatusBadRequest, fmt.Sprintf("The encrypted content %s could not be verified.", abbreviate(content)), "", "invalid_encrypted_content")
				return status, data, true
			}
			continue // reasoning carried whole does not need its id stored
		}
		if id, ok := item["id"].(string); ok && !st.items[id] {
			status, data = invalidRequest(http.StatusBadRequest, fmt.Sprintf("Item with id '%s' not found. Items are not persisted when `store` is set to false. Try again with `store` set to true, or remove this item from your input.", id), "input", "")
			return status, data, true
		}
	}
	return 0, "", false
}

// abbreviate shortens encrypted content as the service quotes it: its first and last four characters.
func abbreviate(s string) string {
	if len(s) <= 8 {
		return s
	}
	return s[:4] + "..." + s[len(s)-4:]
}

// answer answers a request by id: the stored response (GET), its deletion (DELETE), its cancellation (cancel) or
// its input items (input_items, newest first unless order is "asc", as OpenAI lists them). An id this server has
// not stored is answered 404.
func (st *responseStore) answer(operation, id, order string) (status int, data string) {
	st.mu.Lock()
	defer st.mu.Unlock()
	stored, ok := st.responses[id]
	if !ok {
		return responseNotFound(id)
	}
	var v any = stored.response
	switch operation {
	case "responses.delete":
		delete(st.responses, id)
		st.order = slices.DeleteFunc(st.order, func(s string) bool { return s == id })
		v = map[string]any{"id": id, "object": "response", "deleted": true}
	case "responses.cancel":
		// A fake completes a background response at once, so a cancel always finds it finished and answers it
		// as it is. The refusal of a foreground one is as vLLM words it (vllm-project/vllm issue 57999); OpenAI's
		// own message is unconfirmed.
		if !stored.response.Background {
			return invalidRequest(http.StatusBadRequest, "Cannot cancel a synchronous response.", "", "")
		}
	case "responses.input_items":
		items := slices.Clone(stored.input)
		if order != "asc" {
			slices.Reverse(items)
		}
		list := map[string]any{"object": "list", "data": items, "first_id": nil, "last_id": nil, "has_more": false}
		if len(items) > 0 {
			list["first_id"], list["last_id"] = items[0]["id"], items[len(items)-1]["id"]
		}
		v = list
	}
	out, _ := json.Marshal(v)
	return http.StatusOK, string(out)
}

// Responses lists the ids of the responses the server has stored now, in the order it made them: those made
// with store not false, less those deleted. A test uses it to learn which server made a response.
func (s *Server) Responses() []string {
	s.stored.mu.Lock()
	defer s.stored.mu.Unlock()
	return slices.Clone(s.stored.order)
}
