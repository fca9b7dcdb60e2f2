package failover

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/aoai-failover/failover/failovertest"
	openai "github.com/sashabaranov/go-openai"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fuzzStreamKey is the region's key when the fuzzer's own is not one a region could have, and in the stream tests.
const fuzzStreamKey = "b3f1c9a2e4d64e7fa0c18d2b5e9f3a71"

// Placeholders in FuzzStreamFirstEvent's body: the region's key, and a run of maxEventLine bytes (to reach the
// bounds on a line and on what is held back before the first content).
const (
	keyPlaceholder = "{{key}}"
	bigPlaceholder = "{{big}}"
)

// fuzzStreamSeeds are event streams as Azure OpenAI and OpenAI send them, broken in the ways servers and proxies
// break them, with the key echoed where a misbehaving one would echo it.
var fuzzStreamSeeds = []string{
	// Azure: prompt filter results (no choices), a role-only chunk, content, the finish, [DONE].
	"data: {\"choices\":[],\"created\":0,\"id\":\"\",\"model\":\"\",\"object\":\"\",\"prompt_filter_results\":[{\"prompt_index\":0,\"content_filter_results\":{\"hate\":{\"filtered\":false,\"severity\":\"safe\"}}}]}\n\n" +
		"data: {\"choices\":[{\"content_filter_results\":{},\"delta\":{\"content\":\"\",\"role\":\"assistant\"},\"finish_reason\":null,\"index\":0}],\"created\":1732000000,\"id\":\"chatcmpl-1\",\"model\":\"gpt-4o-2024-08-06\",\"object\":\"chat.completion.chunk\",\"system_fingerprint\":\"fp_1\"}\n\n" +
		"data: {\"choices\":[{\"delta\":{\"content\":\"Hello\"},\"finish_reason\":null,\"index\":0}],\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\"}\n\n" +
		"data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\",\"index\":0}],\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\"}\n\n" +
		"data: [DONE]\n\n",
	// OpenAI: no filter results, CRLF line ends, no space after "data:".
	"data:{\"id\":\"chatcmpl-2\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"Hi\"}}]}\r\n\r\ndata:[DONE]\r\n\r\n",
	// A tool call, a refusal, a legacy completion, a function call as the first content.
	"data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_1\",\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"\"}}]}}]}\n\ndata: [DONE]\n\n",
	"data: {\"choices\":[{\"index\":0,\"delta\":{\"refusal\":\"I can't\"}}]}\n\ndata: [DONE]\n\n",
	"data: {\"choices\":[{\"index\":0,\"text\":\"once\",\"finish_reason\":null}],\"object\":\"text_completion\"}\n\ndata: [DONE]\n\n",
	"data: {\"choices\":[{\"index\":0,\"delta\":{\"function_call\":{\"name\":\"f\"}}}]}\n\ndata: [DONE]\n\n",
	// Comments, event names, ids, retry fields and keep-alives around the events.
	": keep-alive\n\nevent: message\nid: 1\nretry: 1000\ndata: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\"}}]}\n\n: ping\n\ndata: [DONE]\n\n",
	// An error event first, echoing the key, as the service sends a failure (server_error) or a proxy an auth echo.
	"data: {\"error\":{\"message\":\"The server had an error while processing your request. Sorry about that!\",\"type\":\"server_error\",\"param\":null,\"code\":null}}\n\n",
	"data: {\"error\":{\"message\":\"Access denied: api-key {{key}} is not valid\",\"type\":\"invalid_request_error\",\"code\":\"401\"}}\n\n",
	"data: {\"error\":{\"code\":\"content_filter\",\"message\":\"key={{key}}\",\"param\":\"prompt\",\"status\":400,\"innererror\":{\"code\":\"ResponsibleAIPolicyViolation\"}}}\n\n",
	// An error event after the first content, echoing the key; then a stream that goes on after it.
	"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"one \"}}]}\n\ndata: {\"error\":{\"message\":\"you sent {{key}}\",\"type\":\"server_error\"}}\n\n",
	"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"one \"}}]}\n\ndata: {\"error\":{\"message\":\"{{key}}\"}}\n\ndata: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"two\"}}]}\n\ndata: [DONE]\n\n",
	// The key in a header-like line and a comment after content (passed on verbatim, not an error).
	"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"one\"}}]}\n\n: echo api-key: {{key}}\n\ndata: [DONE]\n\n",
	// Garbled first events: not JSON, an HTML error page, a JSON array, a number, an empty data line.
	"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"unterminated\n\n",
	"<html><body><h1>502 Bad Gateway</h1></body></html>\n",
	"data: [1,2,3]\n\ndata: 42\n\ndata:\n\ndata: null\n\n",
	"data: {\"choices\":null,\"error\":null}\n\ndata: {\"choices\":[{\"index\":0,\"delta\":{\"content\":null}}]}\n\n",
	// Streams that end before any content: [DONE] first, after the preamble, or a closed connection.
	"data: [DONE]\n\n",
	"data: {\"choices\":[],\"prompt_filter_results\":[{\"prompt_index\":0}]}\n\n",
	"",
	"\n\n\n",
	// Cut after content: without [DONE], mid-line, mid-event.
	"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"one\"}}]}\n\n",
	"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"one\"}}]}\n\ndata: {\"choi",
	"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"one\"}}]}\n\ndata: [DONE]",
	// A line past the bound, more than the bound held back before content, and long lines under both.
	"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"{{big}}{{big}}\"}}]}\n\ndata: [DONE]\n\n",
	"data: {\"choices\":[],\"x\":\"{{big}}\"}\n\n: {{big}}\n\ndata: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"late\"}}]}\n\n",
	": {{big}}\n\ndata: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"after a long comment {{big}}\"}}]}\n\ndata: [DONE]\n\n",
}

// fuzzKey is the fuzzer's key if a region could have it (an Azure, OpenAI or base64 key: at least 16 characters
// of letters, digits and -_.~+/=), else fuzzStreamKey.
func fuzzKey(key string) string {
	if len(key) < 16 || len(key) > 200 {
		return fuzzStreamKey
	}
	for _, c := range []byte(key) {
		if !isKeyChar(c) {
			return fuzzStreamKey
		}
	}
	return key
}

func isKeyChar(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-_.~+/=", c) >= 0
}

// bigRun is what each of the first two {{big}} becomes: a little more than half of what a line may hold and of what
// is held back before the first content, so that two on one line cross the first bound, and on two lines the
// second.
var bigRun = bytes.Repeat([]byte("a"), max(maxEventLine, maxStreamHead)/2+4<<10)

// expandStream puts the key in place of its placeholder, and bigRun in place of the first two {{big}}.
func expandStream(body []byte, key string) []byte {
	body = bytes.ReplaceAll(body, []byte(keyPlaceholder), []byte(key))
	for range 2 {
		i := bytes.Index(body, []byte(bigPlaceholder))
		if i < 0 {
			break
		}
		body = slices.Concat(body[:i], bigRun, body[i+len(bigPlaceholder):])
	}
	return body
}

// streamEnds are how a fuzzed upstream body ends.
var streamEnds = []error{io.EOF, io.ErrUnexpectedEOF, errors.New("read tcp 10.0.0.1:52100->20.1.2.3:443: connection reset by peer")}

// endsStream reports whether line is an error event as the stream reader defines one (isErrorEvent).
func endsStream(line []byte) bool {
	data, ok := eventData(line)
	return ok && isErrorEvent(data)
}

// raisesError reports whether line is an event that OpenAI's own clients raise as an error, wherever the "error"
// member is in it: openai-python raises when data.get("error") is truthy, the npm package when data.error is.
// Through the gateway, such an event reaches them as the region sent it.
func raisesError(line []byte) bool {
	data, ok := eventData(line)
	var event map[string]json.RawMessage
	if !ok || json.Unmarshal(data, &event) != nil {
		return false
	}
	v, ok := event["error"]
	if !ok {
		return false
	}
	switch string(bytes.TrimSpace(v)) {
	case "null", "false", "0", `""`, "{}", "[]":
		return false
	}
	return true
}

func FuzzStreamFirstEvent(f *testing.F) {
	for i, seed := range fuzzStreamSeeds {
		f.Add([]byte(seed), "", uint8(i%4*3), uint8(i%len(streamEnds)))
	}
	f.Add([]byte(fuzzStreamSeeds[8]), "sk-proj-AbCdEf0123456789_-xyz", uint8(0), uint8(0))
	f.Add([]byte(fuzzStreamSeeds[10]), "Zm9vYmFyYmF6cXV4Cg==/+abc", uint8(1), uint8(1))
	f.Fuzz(func(t *testing.T, body []byte, key string, chunk, end uint8) {
		if len(body) > 64<<10 {
			return // the placeholders make long inputs; the fuzzer's own length adds nothing
		}
		key = fuzzKey(key)
		checkStream(t, expandStream(body, key), key, chunk, end)
	})
}

// checkStream serves upstream (ending as end says, arriving in pieces as chunk says) to the stream reader and to a
// whole client, for a region whose key is key, and checks what each passes on.
func checkStream(t *testing.T, upstream []byte, key string, chunk, end uint8) {
	// A reader that does not return is a hang: stop the process, so that the fuzzer keeps the input.
	hung := time.AfterFunc(30*time.Second, func() { panic(fmt.Sprintf("a stream of %d bytes was not read within 30 s", len(upstream))) })
	defer hung.Stop()
	endErr := streamEnds[int(end)%len(streamEnds)]
	opened := fuzzStreamReader(t, upstream, key, int(chunk)%9, endErr)
	if len(upstream) <= 64<<10 { // the bounds are the reader's: a whole client adds only time to a long stream
		fuzzStreamClient(t, upstream, key, int(chunk)%9, endErr, opened)
	}
}

// fuzzStreamReader opens upstream with openStream and the engine's scrubber, reads it to its end, checks what it
// passed on, and reports whether it opened.
func fuzzStreamReader(t *testing.T, upstream []byte, key string, chunk int, endErr error) bool {
	e := &engine{backends: []*backend{{name: "eastus", secret: key}}}
	src := &chunkedBody{data: upstream, size: chunk, end: endErr}
	s, err := openStream(src, e.scrub)
	switch {
	case s == nil && err == nil:
		t.Fatalf("openStream returned neither a stream nor an error")
	case s != nil && err != nil:
		t.Fatalf("openStream returned a stream and an error: %v", err)
	case err != nil:
		if strings.Contains(err.Error(), key) {
			t.Fatalf("openStream's error shows the key: %v", err)
		}
		return false
	}

	// Read in small, odd pieces; every Read gives bytes or an error, and the stream ends within its length.
	var out bytes.Buffer
	p := make([]byte, 1+chunk*7)
	var readErr error
	for reads := 0; ; reads++ {
		if reads > len(upstream)+16 {
			t.Fatalf("the stream did not end after %d reads of %d bytes", reads, len(upstream))
		}
		n, err := s.Read(p)
		out.Write(p[:n])
		if n == 0 && err == nil {
			t.Fatalf("Read returned nothing and no error")
		}
		if err != nil {
			readErr = err
			break
		}
	}
	if err := s.Close(); err != nil || !src.closed {
		t.Fatalf("Close: %v; body closed: %v", err, src.closed)
	}

	// The end is io.EOF after [DONE], else a stream cut; neither shows the key.
	switch {
	case readErr == io.EOF:
		if !hasDone(out.Bytes()) {
			t.Fatalf("io.EOF without data: [DONE] in %q", out.Bytes())
		}
	case !errors.Is(readErr, ErrStreamCut):
		t.Fatalf("the stream ended with %v, not io.EOF or ErrStreamCut", readErr)
	}
	if strings.Contains(readErr.Error(), key) {
		t.Fatalf("the stream's error shows the key: %v", readErr)
	}

	// What was passed on is upstream's bytes in order, all of them after a clean end, with the key removed from
	// error events; an error event ends the stream.
	redact := func(b []byte) []byte { return bytes.ReplaceAll(b, []byte(key), []byte(redacted)) }
	// Lines other than data and blank ones are not passed on (passedOn).
	var kept []byte
	for _, line := range bytes.SplitAfter(upstream, []byte("\n")) {
		if passedOn(line) {
			kept = append(kept, line...)
		}
	}
	got, want := redact(out.Bytes()), redact(kept)
	// A line that spelt the key with JSON escapes comes re-encoded without them (and without the key): such
	// lines are compared by their ends and by where they are, not byte for byte.
	gotLines, wantLines := bytes.SplitAfter(got, []byte("\n")), bytes.SplitAfter(want, []byte("\n"))
	for i, line := range gotLines {
		if i >= len(wantLines) || bytes.Equal(line, wantLines[i]) || !bytes.Equal(lineEnd(line), lineEnd(wantLines[i])) {
			continue
		}
		reEncoded := bytes.Contains(wantLines[i], []byte(`\`)) && bytes.Contains(line, []byte(redacted))
		errorOnly := endsStream(line) && endsStream(wantLines[i]) // an error event goes on with its error alone
		if reEncoded || errorOnly {
			gotLines[i] = wantLines[i]
		}
	}
	got = bytes.Join(gotLines, nil)
	if readErr == io.EOF && !bytes.Equal(got, want) || !bytes.HasPrefix(want, got) {
		t.Fatalf("passed on %q\nof upstream %q", abbreviate(got), abbreviate(want))
	}
	// No error event passed on shows the key; after the first content, one is the stream's last line. (Before it,
	// an error event fails the stream: openStream would not have opened it.)
	lines := bytes.SplitAfter(out.Bytes(), []byte("\n"))
	if len(lines[len(lines)-1]) == 0 {
		lines = lines[:len(lines)-1]
	}
	first := slices.IndexFunc(lines, func(line []byte) bool {
		data, ok := eventData(line)
		content, err := hasContent(data)
		return ok && content && err == nil
	})
	if first < 0 {
		t.Fatalf("the stream opened without a line of content: %q", abbreviate(out.Bytes()))
	}
	for i, line := range lines {
		if (endsStream(line) || raisesError(line)) && bytes.Contains(line, []byte(key)) {
			t.Fatalf("an error event passed on shows the key: %q", line)
		}
		if i > first && endsStream(line) && i != len(lines)-1 {
			t.Fatalf("the stream went on after an error event: %q", abbreviate(bytes.Join(lines[i:], nil)))
		}
	}
	return true
}

// fuzzStreamClient serves upstream as a region's streamed answer through a whole Client and reads it as a caller
// does: the stream opens exactly when openStream does, and fails over (to an *ExhaustedError, with one region)
// otherwise; a stream ends with io.EOF or a *StreamCutError; no error shows the key.
func fuzzStreamClient(t *testing.T, upstream []byte, key string, chunk int, endErr error, opened bool) {
	transport := roundTripper(func(r *http.Request) (*http.Response, error) {
		return &http.Response{StatusCode: http.StatusOK, Status: "200 OK", Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
			Header:  http.Header{"Content-Type": {"text/event-stream; charset=utf-8"}, "X-Ms-Region": {"East US"}},
			Body:    &chunkedBody{data: upstream, size: chunk, end: endErr},
			Request: r, ContentLength: -1}, nil
	})
	c, err := New([]Region{{Name: "eastus", Endpoint: "https://eastus.openai.azure.com", APIKey: key}},
		WithModel("gpt-4o"), WithHTTPClient(&http.Client{Transport: transport}), WithMaxWait(0), WithAttemptTimeout(20*time.Second))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Second)
	defer cancel()
	noKey := func(what string, v any) {
		t.Helper()
		for _, format := range []string{"%v", "%+v", "%#v"} {
			if s := fmt.Sprintf(format, v); strings.Contains(s, key) {
				t.Fatalf("%s shows the key: %s", what, s)
			}
		}
	}

	stream, err := c.CreateChatCompletionStream(ctx, openai.ChatCompletionRequest{
		Messages: []openai.ChatCompletionMessage{{Role: openai.ChatMessageRoleUser, Content: "Say hello."}}})
	if err != nil {
		var exhausted *ExhaustedError
		if !errors.As(err, &exhausted) || !errors.Is(err, ErrExhausted) {
			t.Fatalf("the stream failed with %T %v, not an *ExhaustedError", err, err)
		}
		if opened {
			t.Fatalf("openStream opened the stream, the client failed it: %v", err)
		}
		noKey("the error", err)
		noKey("the attempts", exhausted.Attempts)
		return
	}
	defer stream.Close()
	if !opened {
		t.Fatalf("openStream failed the stream, the client opened it")
	}
	for range bytes.Count(upstream, []byte("\n")) + 2 {
		_, err = stream.Recv()
		if err != nil {
			break
		}
	}
	var cut *StreamCutError
	switch {
	case err == nil:
		t.Fatalf("Recv did not end after every line")
	case err == io.EOF:
		if !hasDone(upstream) {
			t.Fatalf("io.EOF without data: [DONE]")
		}
	case !errors.As(err, &cut) || !errors.Is(err, ErrStreamCut):
		t.Fatalf("the stream ended with %T %v, not io.EOF or a *StreamCutError", err, err)
	}
	noKey("the stream's error", err)
	noKey("the attempts", stream.Attempts())
	if _, again := stream.Recv(); again != err {
		t.Fatalf("Recv after the end gave %v, then %v", err, again)
	}
}

// hasDone reports whether data holds a data: [DONE] line.
func hasDone(data []byte) bool {
	for _, line := range bytes.Split(data, []byte("\n")) {
		if d, ok := eventData(line); ok && string(d) == "[DONE]" {
			return true
		}
	}
	return false
}

func abbreviate(b []byte) []byte {
	if len(b) > 400 {
		return append(append(append([]byte(nil), b[:200]...), "…"...), b[len(b)-200:]...)
	}
	return b
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// fuzzStreamContent is a stream's first content, after which a stream cut reaches the caller.
const fuzzStreamContent = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"one \"}}]}\n\n"

// TestStreamErrorLineWithoutDataPrefixHidesKey: after the first content, a line that is not a data: line is
// scrubbed too: go-openai gathers such lines and, when the stream ends without [DONE], decodes them as the
// stream's error, which would show a key the server echoed.
func TestStreamErrorLineWithoutDataPrefixHidesKey(t *testing.T) {
	checkStream(t, []byte(fuzzStreamContent+`{"error":{"message":"you sent `+fuzzStreamKey+`"}}`+"\n"), fuzzStreamKey, 0, 0)
}

// TestStreamErrorEventAnywhereHidesKey: after the first content, an error event is recognized (ended and
// scrubbed) wherever its "error" member is, as before the first content and as OpenAI's Python and npm clients
// behind the gateway read it, not only when the event starts with {"error".
func TestStreamErrorEventAnywhereHidesKey(t *testing.T) {
	for name, event := range map[string]string{
		"space":        `data: { "error":{"message":"you sent ` + fuzzStreamKey + `"}}`,
		"second field": `data: {"id":"chatcmpl-1","error":{"message":"you sent ` + fuzzStreamKey + `","type":"server_error"}}`,
	} {
		t.Run(name, func(t *testing.T) { checkStream(t, []byte(fuzzStreamContent+event+"\n\n"), fuzzStreamKey, 0, 0) })
	}
}

// TestStreamErrorEventEscapedKeyIsHidden: an error event's message is shown decoded, so a key the server echoed
// with a JSON escape (\u0062 for its first letter here) is scrubbed as it will read, before the first content
// (the *ExhaustedError) and after it (the *StreamCutError).
func TestStreamErrorEventEscapedKeyIsHidden(t *testing.T) {
	event := `data: {"error":{"message":"you sent \u0062` + fuzzStreamKey[1:] + `"}}` + "\n\n"
	t.Run("first event", func(t *testing.T) { checkStream(t, []byte(event), fuzzStreamKey, 0, 0) })
	t.Run("after content", func(t *testing.T) { checkStream(t, []byte(fuzzStreamContent+event), fuzzStreamKey, 0, 0) })
}

// TestStreamScrubbedEventStillFails: when taking the key out of a first error event leaves an event that is not
// an error (here the key, which New accepts, is inside the word "error"), openStream still fails the stream:
// it returns an error and no stream, never neither (the engine would panic on a nil stream).
func TestStreamScrubbedEventStillFails(t *testing.T) {
	const key = "rro"
	if _, err := New([]Region{{Endpoint: "https://eastus.openai.azure.com", APIKey: key}}); err != nil {
		t.Fatalf("New refuses the key: %v", err)
	}
	e := &engine{backends: []*backend{{name: "eastus", secret: key}}}
	s, err := openStream(&chunkedBody{data: []byte(`data: {"error":{"message":"The server had an error"}}` + "\n\n"), end: io.EOF}, e.scrub)
	if s != nil || err == nil {
		t.Fatalf("openStream: stream %v, error %v; want no stream and an error", s, err)
	}
}

// TestStreamLineWithEscapedKeyKeepsItsEnd: a line that is not data and spells the key with an escape goes on
// re-encoded, with its own line ending, and the stream after it is unchanged.
func TestStreamLineWithEscapedKeyKeepsItsEnd(t *testing.T) {
	escaped := `\u00` + fmt.Sprintf("%x", fuzzStreamKey[0]) + fuzzStreamKey[1:]
	upstream := fuzzStreamContent + `{"error":{"message":"you sent ` + escaped + `"}}` + "\r\n" +
		"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"two\"}}]}\n\ndata: [DONE]\n\n"
	checkStream(t, []byte(upstream), fuzzStreamKey, 0, 0)
}

// streamThroughClient serves upstream as one region's streamed answer through a whole Client and reads it as a
// caller does, returning the text and the error that ended the stream (nil after a clean end, at io.EOF).
func streamThroughClient(t *testing.T, upstream string) (string, error) {
	t.Helper()
	transport := roundTripper(func(r *http.Request) (*http.Response, error) {
		return &http.Response{StatusCode: http.StatusOK, Status: "200 OK", Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
			Header:  http.Header{"Content-Type": {"text/event-stream; charset=utf-8"}},
			Body:    &chunkedBody{data: []byte(upstream), end: io.EOF},
			Request: r, ContentLength: -1}, nil
	})
	c, err := New([]Region{{Name: "eastus", Endpoint: "https://eastus.openai.azure.com", APIKey: fuzzStreamKey}},
		WithModel("gpt-4o"), WithHTTPClient(&http.Client{Transport: transport}), WithMaxWait(0))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, err := c.CreateChatCompletionStream(ctx, openai.ChatCompletionRequest{
		Messages: []openai.ChatCompletionMessage{{Role: openai.ChatMessageRoleUser, Content: "Say hello."}}})
	if err != nil {
		t.Fatalf("the stream did not open: %v", err)
	}
	defer stream.Close()
	text, err := failovertest.ReadStream(stream)
	if _, again := stream.Recv(); again == nil { // an ended stream gives its end again
		t.Fatal("the stream did not end")
	}
	return text, err
}

// TestNonDataLineBeforeFirstContentHidesKey: a line that is not data, before the first content, is not replayed
// to the caller: go-openai would gather it into the cut stream's error, key and all.
func TestNonDataLineBeforeFirstContentHidesKey(t *testing.T) {
	_, err := streamThroughClient(t, `{"error":{"message":"you sent `+fuzzStreamKey+`"}}`+"\n\n"+fuzzStreamContent)
	if err == nil {
		t.Fatalf("the cut stream ended with %v", err)
	}
	if strings.Contains(fmt.Sprintf("%v %+v", err, err), fuzzStreamKey) {
		t.Errorf("the stream's error shows the key: %v", err)
	}
}

// TestKeySplitAcrossNonDataLinesIsHidden: go-openai joins every non-data line into the stream's error, so a key
// broken over two of them would pass a scrubber that looks at one line at a time; such lines are not passed on.
func TestKeySplitAcrossNonDataLinesIsHidden(t *testing.T) {
	_, err := streamThroughClient(t, fuzzStreamContent+
		`{"error":{"message":"you sent `+fuzzStreamKey[:12]+"\n"+fuzzStreamKey[12:]+`"}}`+"\n")
	if err == nil {
		t.Fatalf("the cut stream ended with %v", err)
	}
	if strings.Contains(fmt.Sprintf("%v %+v", err, err), fuzzStreamKey) {
		t.Errorf("the stream's error shows the key: %v", err)
	}
}

// TestEmptyErrorMemberDoesNotCutAStream: an "error" member that holds nothing ({}, as here) is not an error event,
// as OpenAI's clients read it: a complete stream with its [DONE] ends with io.EOF, and rests nothing.
func TestEmptyErrorMemberDoesNotCutAStream(t *testing.T) {
	text, err := streamThroughClient(t, fuzzStreamContent+
		"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"two\"}}],\"error\":{}}\n\n"+
		"data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n"+
		"data: [DONE]\n\n")
	if err != nil {
		t.Errorf("a complete stream (text %q) ended with %v, not io.EOF", text, err)
	}
}

// TestErrorEventAnywhereReachesItsAPIError: an error event whose "error" member is not first goes on with its error
// alone, first, so that go-openai reads it and the caller's *StreamCutError reaches the service's *openai.APIError.
func TestErrorEventAnywhereReachesItsAPIError(t *testing.T) {
	_, err := streamThroughClient(t, fuzzStreamContent+
		`data: {"id":"chatcmpl-1","error":{"message":"The server had an error while processing your request.","type":"server_error"}}`+"\n\n")
	var cut *StreamCutError
	if !errors.As(err, &cut) {
		t.Fatalf("the stream ended with %T %v, not a *StreamCutError", err, err)
	}
	var apiErr *openai.APIError
	if !errors.As(err, &apiErr) {
		t.Errorf("the cut from an error event does not reach its *openai.APIError: %v", err)
	}
}

// BenchmarkStreamRead reads a 500-chunk stream through openStream and streamBody: plain chunks, chunks with an
// escape (decoded, in case the escape spells "error"), and chunks whose content is the word error.
func BenchmarkStreamRead(b *testing.B) {
	const tail = `"},"finish_reason":null,"index":0}],"created":1732000000,"id":"chatcmpl-1","model":"gpt-4o","object":"chat.completion.chunk","system_fingerprint":"fp_1"}`
	const head = `{"choices":[{"content_filter_results":{"hate":{"filtered":false,"severity":"safe"}},"delta":{"content":"`
	for _, c := range []struct{ name, content string }{{"ascii", " hello"}, {"escaped", ` caf\u00e9`}, {"errorword", "error"}} {
		var sb strings.Builder
		for range 500 {
			sb.WriteString("data: " + head + c.content + tail + "\n\n")
		}
		sb.WriteString("data: [DONE]\n\n")
		data := []byte(sb.String())
		scrub := func(d []byte) ([]byte, bool) { return d, false }
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				s, err := openStream(&chunkedBody{data: data, end: io.EOF}, scrub)
				if err != nil {
					b.Fatal(err)
				}
				if n, err := io.Copy(io.Discard, s); err != nil || n != int64(len(data)) {
					b.Fatal(n, err)
				}
			}
		})
	}
}

// TestStreamLinesGoOnAsTheyCome pins that a stream is passed on a line at a time: its first content opens it
// without waiting for the blank line that ends the event, and an error event's data line ends it at once, from a
// server that then holds the connection.
func TestStreamLinesGoOnAsTheyCome(t *testing.T) {
	noScrub := func(b []byte) ([]byte, bool) { return b, false }
	synctest.Test(t, func(t *testing.T) {
		pr, pw := io.Pipe()
		defer pw.Close()
		go pw.Write([]byte(`data: {"choices":[{"delta":{"content":"hi"}}]}` + "\n"))
		opened := make(chan *streamBody, 1)
		go func() {
			s, err := openStream(pr, noScrub)
			assert.NoError(t, err)
			opened <- s
		}()
		synctest.Wait()
		var s *streamBody
		select {
		case s = <-opened:
		default:
			require.Fail(t, "openStream waits for the blank line after the first content")
		}
		require.NotNil(t, s)

		go pw.Write([]byte(`data: {"error":{"message":"boom"}}` + "\n"))
		ended := make(chan error, 1)
		go func() {
			_, err := io.ReadAll(s)
			ended <- err
		}()
		synctest.Wait()
		select {
		case err := <-ended:
			assert.ErrorIs(t, err, ErrStreamCut)
		default:
			require.Fail(t, "an error event's data line does not end the stream until its blank line")
		}
	})
}
