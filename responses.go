package failover

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	openai "github.com/sashabaranov/go-openai"
)

// The Responses API's stored state. A create that names none (no previous_response_id, no input item with an id
// or encrypted reasoning) fails over like chat. One that names state goes to the backend that made it, as far as
// the Client knows (affinity.go): it is pinned there, and waits for it or fails with ErrStoredStateUnavailable
// rather than go where its state is not. When no one knows where the state is (the Client forgot, or another
// Client made it), the create seeks it: it goes to the backends in order, and an answer that says the state is
// not there moves on, unseen, to the next.

// storedRefs are the stored objects a Responses create names: its previous response, its conversation, and the
// ids of its input items; encrypted is set when an input item carries encrypted reasoning, which only its region can read.
func storedRefs(data []byte) (ids []string, encrypted bool) {
	if !bytes.Contains(data, []byte(`"previous_response_id"`)) && !bytes.Contains(data, []byte(`"id"`)) &&
		!bytes.Contains(data, []byte(`"encrypted_content"`)) && !bytes.Contains(data, []byte(`"conversation"`)) {
		return nil, false // the common first turn: not decoded
	}
	var create struct {
		PreviousResponseID string          `json:"previous_response_id"`
		Conversation       json.RawMessage `json:"conversation"` // "conv_…" or {"id": "conv_…"}
		Input              json.RawMessage `json:"input"`
	}
	if json.Unmarshal(data, &create) != nil {
		return nil, false // the region will say what is wrong with it
	}
	if create.PreviousResponseID != "" {
		ids = append(ids, create.PreviousResponseID)
	}
	var conversation struct {
		ID string `json:"id"`
	}
	if json.Unmarshal(create.Conversation, &conversation.ID) != nil {
		_ = json.Unmarshal(create.Conversation, &conversation)
	}
	if conversation.ID != "" {
		ids = append(ids, conversation.ID)
	}
	var items []struct {
		ID               string  `json:"id"`
		EncryptedContent *string `json:"encrypted_content"`
	}
	if len(create.Input) > 0 && create.Input[0] == '[' && json.Unmarshal(create.Input, &items) == nil {
		for _, item := range items {
			if item.ID != "" {
				ids = append(ids, item.ID)
			}
			encrypted = encrypted || item.EncryptedContent != nil && *item.EncryptedContent != ""
		}
	}
	return ids, encrypted
}

// runsInBackground reports whether a Responses create asks to run in the background ("background": true).
func runsInBackground(data []byte) bool {
	if !bytes.Contains(data, []byte(`"background"`)) {
		return false
	}
	var create struct {
		Background bool `json:"background"`
	}
	return json.Unmarshal(data, &create) == nil && create.Background
}

// placeStored pins a Responses create that names stored state to the backend that holds it, or makes it seek
// the state when no one knows where that is.
func (c *call) placeStored() error {
	data := c.body.data
	if data == nil {
		var err error
		if data, err = readBody(c.body.get, c.body.length); err != nil {
			return err
		}
	}
	ids, encrypted := storedRefs(data)
	c.refs, c.background = ids, runsInBackground(data)
	for i, id := range ids {
		// The ids of one request were mostly made together: the Store is asked about the first two only, so that
		// a long conversation's items do not cost a round trip each before any region is asked.
		if b := c.e.owners.find(c.ctx, id, i < 2); b != nil {
			if !b.serves(c.model) {
				return fmt.Errorf("failover: %s, which holds %q, does not serve model %q: ask for a model it has", b.name, id, c.model)
			}
			c.pin = b
			return nil
		}
	}
	c.seek = len(ids) > 0 || encrypted
	return nil
}

// notHere reports whether an answer to a Responses request says the state it names is not in that region: a
// 404, or the 400s for an unknown previous response, an unknown input item, or encrypted reasoning made elsewhere.
func notHere(a Attempt) bool {
	if a.Status == http.StatusNotFound {
		return true
	}
	var apiErr *openai.APIError
	if a.Status != http.StatusBadRequest || !errors.As(a.Err, &apiErr) {
		return false
	}
	code, _ := apiErr.Code.(string)
	return code == "previous_response_not_found" || code == "invalid_encrypted_content" ||
		apiErr.Param != nil && *apiErr.Param == "input" && strings.Contains(apiErr.Message, "not found")
}

// noneHas reports whether every region of order that could answer a seek (it serves the model, and was not
// found to lack it) said the state is not there.
func (c *call) noneHas(order []*backend) bool {
	now := time.Now()
	for _, b := range order {
		if !b.serves(c.model) || b.fallback || slices.Contains(c.notHere, b) {
			continue
		}
		if s, ok := b.health.skipped(c.model, now); ok && s.State == StateMissing {
			continue // it cannot answer this request, wherever the state is
		}
		return false
	}
	return true
}

// learnResponse remembers that b made the response (and its output items) a served create answered with: from
// the JSON answer, or, for a stream, from its response.created and response.completed events as they pass. The
// state a served create named is in b too.
func (c *request) learnResponse(ctx context.Context, b *backend, resp *http.Response) {
	e := c.e
	if c.seek {
		e.owners.learn(ctx, b, c.refs...)
	}
	switch body := bodyOf(resp).(type) {
	case *bodyReader:
		e.owners.learn(ctx, b, storedIDs(body.data)...)
	case *streamBody:
		body.learnFrom(func(data []byte) { e.owners.learn(ctx, b, storedIDs(data)...) })
	}
}
