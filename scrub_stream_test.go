package failover_test

import (
	"testing"

	"github.com/aoai-failover/failover"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// An error event may spread its data over several "data:" lines (the SSE specification joins them with "\n",
// as the openai npm package reads them). The engine reads a chat stream's data line by line, and a line that is
// part of such an event is no JSON value by itself: it used to go on to the caller with the key it echoed. Such
// a line is now a malformed event: the stream is cut there and nothing of the event goes on.
func TestSecretInAMultiLineErrorEventIsScrubbed(t *testing.T) {
	key := secrets[0]
	data, err := streamFrom(t, key, `data: {"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"Hi"}}]}`+"\n\n"+
		`data: {"error":{"message":"the key `+key+` is not valid for this deployment",`+"\n"+
		`data: "type":"server_error","param":null,"code":"500"}}`+"\n\n")
	assert.Contains(t, data, `"content":"Hi"`, "the stream was served")
	// The event's first line is not JSON by itself: the stream is cut there, and nothing of the event goes on.
	require.ErrorIs(t, err, failover.ErrStreamCut)
	assert.NotContains(t, err.Error(), key)
	assert.NotContains(t, data, key, "the key does not")
	assert.NotContains(t, data, key[len(key)-12:], "nor any part of it")
}
