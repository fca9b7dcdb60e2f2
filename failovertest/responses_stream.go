package failovertest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
)

// streamResponse answers a streamed create with the Responses API's typed server-sent events, each "event:
// <type>" and "data: <json>" with a sequence_number counting from 0, in the service's order: response.created,
// response.in_progress, for a reasoning item its output_item.added and .done, then for the message
// response.output_item.added, response.content_part.added, a response.output_text.delta per word,
// response.output_text.done, response.content_part.done, response.output_item.done, and response.completed with
// the whole response. There is no data: [DONE]: response.completed is the end.
//
// The response is stored (unless store: false) just before response.completed is sent, so that a client that has
// read it can retrieve it. Of the Reply's stream faults: BodyDelay holds the events back after the headers;
// StreamErrorAt sends an error event in place of delta number StreamErrorAt (1: before any) and ends the stream;
// StreamCutAfter closes the connection after that many deltas; StreamMalformedAt sends a delta broken off mid-JSON in
// place of delta number StreamMalformedAt and goes on. Either way response.completed is not sent and the
// response is not stored.
func (s *Server) streamResponse(w http.ResponseWriter, r *http.Request, resp responseObject, message map[string]any, input []map[string]any, reply Reply) {
	rc, ok := s.startStream(w, r, reply)
	if !ok {
		return
	}
	seq := 0
	send := func(typ string, fields map[string]any) {
		fields["type"], fields["sequence_number"] = typ, seq
		seq++
		data, _ := json.Marshal(fields)
		fmt.Fprintf(w, "event: %s\ndata: %s\n\n", typ, data)
		_ = rc.Flush()
	}
	started := resp
	started.Status, started.Output, started.Usage = "in_progress", []any{}, nil
	send("response.created", map[string]any{"response": started})
	send("response.in_progress", map[string]any{"response": started})
	index := len(resp.Output) - 1 // the message is the last item, after any reasoning
	if index > 0 {
		send("response.output_item.added", map[string]any{"output_index": 0, "item": resp.Output[0]})
		send("response.output_item.done", map[string]any{"output_index": 0, "item": resp.Output[0]})
	}
	id := message["id"]
	text := message["content"].([]any)[0].(map[string]any)["text"].(string)
	empty := map[string]any{"type": "message", "id": id, "status": "in_progress", "role": "assistant", "content": []any{}}
	send("response.output_item.added", map[string]any{"output_index": index, "item": empty})
	part := map[string]any{"item_id": id, "output_index": index, "content_index": 0}
	with := func(extra map[string]any) map[string]any {
		for k, v := range part {
			extra[k] = v
		}
		return extra
	}
	send("response.content_part.added", with(map[string]any{"part": map[string]any{"type": "output_text", "text": "", "annotations": []any{}}}))
	for i, word := range strings.SplitAfter(text, " ") {
		if reply.StreamErrorAt > 0 && i == reply.StreamErrorAt-1 {
			send("error", map[string]any{"code": "server_error", "param": nil,
				"message": "The server had an error while processing your request. Sorry about that!"})
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
			fmt.Fprintf(w, "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"del\n\n")
			_ = rc.Flush()
			continue
		}
		send("response.output_text.delta", with(map[string]any{"delta": word}))
	}
	send("response.output_text.done", with(map[string]any{"text": text}))
	send("response.content_part.done", with(map[string]any{"part": message["content"].([]any)[0]}))
	send("response.output_item.done", map[string]any{"output_index": index, "item": message})
	s.keep(resp, input)
	send("response.completed", map[string]any{"response": resp})
}
