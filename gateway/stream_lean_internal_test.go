package gateway

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

// The sequence of a typed stream is followed without a copy of each event (add runs for every event of every
// stream), and an event whose data spans several lines is read as an SSE reader joins it.
func TestTypedSequenceReadsEventsInPlace(t *testing.T) {
	var seq typedSequence
	delta := []byte("event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"sequence_number\":41,\"delta\":\"Hi\"}\n\n")
	allocs := testing.AllocsPerRun(100, func() { seq.add(delta) })
	assert.Zero(t, allocs)
	assert.True(t, seq.typed)
	assert.Equal(t, int64(42), seq.next)

	seq.add([]byte("event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\ndata: \"sequence_number\"\ndata: : 57}\n\n"))
	assert.Equal(t, int64(58), seq.next, "the data lines joined by newlines")

	chat := typedSequence{}
	chat.add([]byte("data: {\"sequence_number\":3}\n\n"))
	assert.False(t, chat.typed)
	assert.Zero(t, chat.next, "chat's events are not parsed")
}
