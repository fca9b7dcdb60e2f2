package gateway

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/stretchr/testify/assert"
)

// typedEvents are the start of a Responses API stream, through its first delta: sequence numbers 0 to 4.
const typedEvents = "event: response.created\ndata: {\"type\":\"response.created\",\"sequence_number\":0,\"response\":{\"id\":\"resp_1\",\"status\":\"in_progress\"}}\n\n" +
	"event: response.in_progress\ndata: {\"type\":\"response.in_progress\",\"sequence_number\":1,\"response\":{\"id\":\"resp_1\"}}\n\n" +
	"event: response.output_item.added\ndata: {\"type\":\"response.output_item.added\",\"sequence_number\":2,\"output_index\":0}\n\n" +
	"event: response.content_part.added\ndata: {\"type\":\"response.content_part.added\",\"sequence_number\":3}\n\n" +
	"event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"sequence_number\":4,\"delta\":\"Hello \"}\n\n"

func cutEventOf(seq string) string {
	return `event: error` + "\n" + `data: {"type":"error","code":"stream_cut","message":"failover: stream cut: reset","param":null,"sequence_number":` + seq + "}\n\n"
}

// streamOf runs streamEvents over stream, which fails with a cut after its last byte, and returns what the caller got.
func streamOf(t *testing.T, stream string, typed bool) string {
	t.Helper()
	w := httptest.NewRecorder()
	body := io.MultiReader(strings.NewReader(stream), iotest.ErrReader(errors.New("failover: stream cut: reset")))
	assert.True(t, streamEvents(answerWriter{w, http.NewResponseController(w)}, body, typed), "the stream was cut")
	return w.Body.String()
}

func TestTypedStreamCutEndsWithTypedErrorEvent(t *testing.T) {
	for _, tc := range []struct {
		name, stream string
		typed        bool
		want         string
	}{
		{"a Responses route", typedEvents, true, typedEvents + cutEventOf("5")},
		{"event lines on another route", typedEvents, false, typedEvents + cutEventOf("5")},
		{"typed, no sequence numbers", "event: response.created\ndata: {\"type\":\"response.created\"}\n\n", false,
			"event: response.created\ndata: {\"type\":\"response.created\"}\n\n" + cutEventOf("0")},
		{"typed route, nothing sent", "", true, cutEventOf("0")},
		// An event the region left open is closed; its sequence number counts, as the caller parses it.
		{"cut inside an event", typedEvents + "event: response.output_text.delta\ndata: {\"sequence_number\":5,\"delta\":\"wor\"}\n", true,
			typedEvents + "event: response.output_text.delta\ndata: {\"sequence_number\":5,\"delta\":\"wor\"}\n\n" + cutEventOf("6")},
		// Half a line is dropped, and with it a sequence number no caller saw.
		{"cut mid-line", typedEvents + "event: response.output_text.delta\ndata: {\"sequence_number\":5,\"del", true,
			typedEvents + "event: response.output_text.delta\n\n" + cutEventOf("5")},
		{"data over several lines", "event: x\ndata: {\"sequence_number\":\ndata: 41}\n\n", false,
			"event: x\ndata: {\"sequence_number\":\ndata: 41}\n\n" + cutEventOf("42")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := streamOf(t, tc.stream, tc.typed)
			assert.Equal(t, tc.want, got)
			events := strings.Split(strings.TrimSuffix(got, "\n\n"), "\n\n")
			assert.True(t, strings.HasPrefix(events[len(events)-1], "event: error\ndata: {"), "the cut is an event of its own")
		})
	}
}

// Chat's streams keep chat's cut event: error data, no event line, no sequence number.
func TestChatStreamCutKeepsChatShape(t *testing.T) {
	chunk := `data: {"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"Hello "}}],"sequence_number":3}` + "\n\n"
	got := streamOf(t, chunk, false)
	assert.Equal(t, chunk+`data: {"error":{"message":"failover: stream cut: reset","type":"server_error","param":null,"code":"stream_cut"}}`+"\n\n", got)
	assert.NotContains(t, got, "event:")
}

// TestSequenceNumber: an event's sequence_number is read without decoding it, and only when it is a whole number
// that ends where a JSON number ends.
func TestSequenceNumber(t *testing.T) {
	cases := []struct {
		data string
		want int64
		ok   bool
	}{
		{`{"type":"response.output_text.delta","sequence_number":12,"delta":"hi"}`, 12, true},
		{`{"type":"x","sequence_number" : 7}`, 7, true},
		{`{"type":"x","delta":"say \"sequence_number\":3","sequence_number":4}`, 4, true},
		{`{"type":"x","sequence_number":1`, 0, false},
		{`{"type":"x","sequence_number":-1}`, 0, false},
		{`{"type":"x","sequence_number":1.5}`, 0, false},
		{`{"type":"x"}`, 0, false},
	}
	for _, tc := range cases {
		n, ok := sequenceNumber([]byte(tc.data))
		assert.Equal(t, tc.ok, ok, tc.data)
		assert.Equal(t, tc.want, n, tc.data)
	}
}
