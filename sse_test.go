package failover_test

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/aoai-failover/failover"
	"github.com/aoai-failover/failover/failovertest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// readEvents reads r to its end, or its first error, through an EventReader: the events returned with nil, then
// what came with the error and the error.
func readEvents(t *testing.T, r io.Reader) (events []string, last string, err error) {
	t.Helper()
	er := failover.NewEventReader(r)
	for range 100000 {
		event, err := er.Next()
		if err != nil {
			return events, string(event), err
		}
		events = append(events, string(event))
	}
	t.Fatal("the event stream did not end")
	return nil, "", nil
}

func TestEventReaderReturnsWholeEvents(t *testing.T) {
	const stream = "event: response.created\nid: 1\n: a comment\ndata: {\"a\":1}\n\n" +
		"data: {\"b\":2}\ndata: {\"c\":3}\n\n" +
		"data: [DONE]\n\n"
	want := []string{
		"event: response.created\nid: 1\n: a comment\ndata: {\"a\":1}\n\n",
		"data: {\"b\":2}\ndata: {\"c\":3}\n\n",
		"data: [DONE]\n\n",
	}
	readers := map[string]func() io.Reader{
		"several events in one read": func() io.Reader { return strings.NewReader(stream) },
		"one byte at a time":         func() io.Reader { return iotest.OneByteReader(strings.NewReader(stream)) },
		"half a read at a time":      func() io.Reader { return iotest.HalfReader(strings.NewReader(stream)) },
	}
	for name, reader := range readers {
		t.Run(name, func(t *testing.T) {
			events, last, err := readEvents(t, reader())
			assert.Equal(t, want, events)
			assert.Equal(t, io.EOF, err)
			assert.Empty(t, last, "nothing is left over after the last blank line")
		})
	}
}

func TestEventReaderCRLF(t *testing.T) {
	const stream = "event: delta\r\ndata: {\"a\":1}\r\n\r\ndata: [DONE]\r\n\r\n"
	for name, r := range map[string]io.Reader{
		"whole":    strings.NewReader(stream),
		"one byte": iotest.OneByteReader(strings.NewReader(stream)),
	} {
		t.Run(name, func(t *testing.T) {
			events, last, err := readEvents(t, r)
			assert.Equal(t, []string{"event: delta\r\ndata: {\"a\":1}\r\n\r\n", "data: [DONE]\r\n\r\n"}, events)
			assert.Equal(t, io.EOF, err)
			assert.Empty(t, last)
		})
	}
}

func TestEventReaderReturnsAnEventOver1MiBInPiecesOfWholeLines(t *testing.T) {
	line := "data: " + strings.Repeat("x", 994) + "\n" // 1001 bytes
	const lines = 1600                                 // about 1.5 MiB, in one event
	long := strings.Repeat(line, lines) + "\n"
	stream := long + "data: after\n\n"

	r := failover.NewEventReader(strings.NewReader(stream))
	var pieces []string
	for {
		piece, err := r.Next()
		require.NoError(t, err)
		pieces = append(pieces, string(piece))
		if strings.HasSuffix(string(piece), "\n\n") {
			break
		}
	}
	require.Len(t, pieces, 2, "1.5 MiB comes in two pieces")
	assert.GreaterOrEqual(t, len(pieces[0]), 1<<20, "a piece is at least 1 MiB")
	assert.Less(t, len(pieces[0]), 1<<20+len(line), "a piece ends at the first line that takes it past 1 MiB")
	for i, p := range pieces {
		if i == len(pieces)-1 {
			p = strings.TrimSuffix(p, "\n") // the blank line that ends the event
		}
		// Not assert.Equal: a failure would print megabytes.
		assert.True(t, p == strings.Repeat(line, len(p)/len(line)), "piece %d is whole lines", i)
	}
	assert.True(t, long == strings.Join(pieces, ""), "the pieces are the event, in order")

	next, err := r.Next()
	require.NoError(t, err)
	assert.Equal(t, "data: after\n\n", string(next), "the next event comes whole")
	_, err = r.Next()
	assert.Equal(t, io.EOF, err)
}

func TestEventReaderRejectsALineOver1MiB(t *testing.T) {
	for name, size := range map[string]int{"2 MiB": 2 << 20, "1 MiB and 100 KiB": 1<<20 + 100<<10} {
		t.Run(name, func(t *testing.T) {
			stream := "data: ok\n\n" + "data: " + strings.Repeat("y", size) + "\n\n"
			r := failover.NewEventReader(strings.NewReader(stream))
			first, err := r.Next()
			require.NoError(t, err)
			assert.Equal(t, "data: ok\n\n", string(first))
			_, err = r.Next()
			require.Error(t, err)
			assert.NotEqual(t, io.EOF, err)
			assert.ErrorContains(t, err, "stream line longer than")
		})
	}
}

func TestEventReaderRejectsALineJustOver1MiB(t *testing.T) {
	// A line a few bytes over the limit, whose end comes in the same buffer as the byte that takes it over.
	stream := "data: " + strings.Repeat("y", 1<<20+10) + "\n\n"
	_, err := failover.NewEventReader(strings.NewReader(stream)).Next()
	assert.ErrorContains(t, err, "stream line longer than")
}

func TestEventReaderReturnsTheUnfinishedEventWithEOF(t *testing.T) {
	for name, r := range map[string]io.Reader{
		"whole":    strings.NewReader("data: 1\n\nid: 7\ndata: half"),
		"one byte": iotest.OneByteReader(strings.NewReader("data: 1\n\nid: 7\ndata: half")),
	} {
		t.Run(name, func(t *testing.T) {
			events, last, err := readEvents(t, r)
			assert.Equal(t, []string{"data: 1\n\n"}, events)
			assert.Equal(t, io.EOF, err)
			assert.Equal(t, "id: 7\ndata: half", last, "the unfinished event comes with io.EOF, its last line without a newline")
		})
	}
}

func TestEventReaderReturnsWhatWasReadWithAReadError(t *testing.T) {
	broken := errors.New("connection reset by peer")
	r := io.MultiReader(strings.NewReader("data: 1\n\ndata: 2\nda"), iotest.ErrReader(broken))
	events, last, err := readEvents(t, r)
	assert.Equal(t, []string{"data: 1\n\n"}, events)
	assert.Equal(t, broken, err, "the read error is returned as it came")
	assert.Equal(t, "data: 2\nda", last, "with what was read of the event, half a line and all")
}

// doStream sends a streaming chat completion request through client.Do.
func doStream(t *testing.T, client *failover.Client) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, "https://ignored.example/v1/chat/completions",
		strings.NewReader(`{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"Say hello."}]}`))
	require.NoError(t, err)
	resp, err := client.Do(req)
	require.NoError(t, err)
	t.Cleanup(func() { resp.Body.Close() })
	require.Equal(t, http.StatusOK, resp.StatusCode)
	return resp
}

func TestEventReaderOverAServedStream(t *testing.T) {
	servers := startRegions(t, []string{"eastus"})
	servers[0].Script(failovertest.OK("one two three"))
	client := newClient(t, regionsOf(servers...))
	resp := doStream(t, client)

	events, last, err := readEvents(t, resp.Body)
	assert.Equal(t, io.EOF, err, "a complete stream ends with io.EOF")
	assert.Empty(t, last)
	require.NotEmpty(t, events)
	for i, e := range events {
		assert.True(t, strings.HasSuffix(e, "\n\n"), "event %d is whole: %q", i, e)
	}
	// The fake sends the prompt filter results, a role chunk, then content: held back until the first content,
	// they still come one event at a time, as a reader over the same bytes would give them.
	require.GreaterOrEqual(t, len(events), 4)
	assert.Contains(t, events[0], "prompt_filter_results")
	assert.Contains(t, events[1], `"role":"assistant"`)
	assert.Contains(t, events[2], `"content":"one "`)
	assert.Equal(t, "data: [DONE]\n\n", events[len(events)-1])
	for _, e := range events {
		assert.Equal(t, 1, strings.Count(e, "data: "), "one event at a time: %q", e)
	}
	var content []string
	for _, word := range []string{"one ", "two ", "three"} {
		if assert.Contains(t, strings.Join(events, ""), `"content":"`+word+`"`) {
			content = append(content, word)
		}
	}
	assert.Len(t, content, 3)

	// Read after the end: still io.EOF.
	again, err := failover.NewEventReader(resp.Body).Next()
	assert.Empty(t, again)
	assert.Equal(t, io.EOF, err)
}

func TestEventReaderOverAServedStreamCutUpstream(t *testing.T) {
	cases := map[string]failovertest.Reply{
		"connection closed without [DONE]": {Content: "one two three", StreamCutAfter: 2},
		"error event":                      {Content: "one two three", StreamErrorAt: 2},
	}
	for name, reply := range cases {
		t.Run(name, func(t *testing.T) {
			servers := startRegions(t, []string{"eastus", "westus"})
			servers[0].Script(reply)
			client := newClient(t, regionsOf(servers...))
			resp := doStream(t, client)

			events, last, err := readEvents(t, resp.Body)
			require.Error(t, err)
			assert.NotEqual(t, io.EOF, err, "a cut stream must not end like a complete one")
			assert.ErrorIs(t, err, failover.ErrStreamCut)
			all := strings.Join(events, "") + last
			assert.Contains(t, all, `"content":"one "`, "what came before the cut was passed on")
			assert.NotContains(t, all, "[DONE]")
			assert.Zero(t, servers[1].Requests(), "once content went on, no other region is asked")
		})
	}
}

// TestEventReaderOverAServedStreamMatchesRead: reading a served stream event by event gives the same bytes as
// reading it with Read.
func TestEventReaderOverAServedStreamMatchesRead(t *testing.T) {
	servers := startRegions(t, []string{"eastus"})
	client := newClient(t, regionsOf(servers...))

	servers[0].Script(failovertest.OK("alpha beta gamma delta"))
	whole, err := io.ReadAll(doStream(t, client).Body)
	require.NoError(t, err)

	servers[0].Script(failovertest.OK("alpha beta gamma delta"))
	events, _, err := readEvents(t, doStream(t, client).Body)
	require.Equal(t, io.EOF, err)
	// The ids and timestamps of the two answers differ; the shape does not.
	assert.Equal(t, bytes.Count(whole, []byte("\n\n")), strings.Count(strings.Join(events, ""), "\n\n"))
	assert.Equal(t, bytes.Count(whole, []byte("data: ")), strings.Count(strings.Join(events, ""), "data: "))
}
