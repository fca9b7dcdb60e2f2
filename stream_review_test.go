package failover

// What a second review of the stream scrubbing found; each test failed on the code it reviewed.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	openai "github.com/sashabaranov/go-openai"
)

const streamReviewKey = "b3f1c9a2e4d64e7fa0c18d2b5e9f3a71"

// streamReviewContent is a stream's first content.
const streamReviewContent = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"one \"}}]}\n\n"

// streamReviewStream serves upstream as one region's streamed answer through a whole Client and reads it as a caller
// does, returning the text and the error that ended the stream (io.EOF after a clean end).
func streamReviewStream(t *testing.T, upstream string) (string, error) {
	t.Helper()
	transport := roundTripper(func(r *http.Request) (*http.Response, error) {
		return &http.Response{StatusCode: http.StatusOK, Status: "200 OK", Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
			Header:  http.Header{"Content-Type": {"text/event-stream; charset=utf-8"}},
			Body:    &chunkedBody{data: []byte(upstream), end: io.EOF},
			Request: r, ContentLength: -1}, nil
	})
	c, err := New([]Region{{Name: "eastus", Endpoint: "https://eastus.openai.azure.com", APIKey: streamReviewKey}},
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
	var text strings.Builder
	for range 100 {
		chunk, err := stream.Recv()
		if err != nil {
			return text.String(), err
		}
		for _, ch := range chunk.Choices {
			text.WriteString(ch.Delta.Content)
		}
	}
	t.Fatal("the stream did not end")
	return "", nil
}

// TestNonDataLineBeforeFirstContentHidesKey: a line that is not data, before the first content, is not replayed
// to the caller: go-openai would gather it into the cut stream's error, key and all.
func TestNonDataLineBeforeFirstContentHidesKey(t *testing.T) {
	_, err := streamReviewStream(t, `{"error":{"message":"you sent `+streamReviewKey+`"}}`+"\n\n"+streamReviewContent)
	if err == nil || err == io.EOF {
		t.Fatalf("the cut stream ended with %v", err)
	}
	if strings.Contains(fmt.Sprintf("%v %+v", err, err), streamReviewKey) {
		t.Errorf("the stream's error shows the key: %v", err)
	}
}

// TestKeySplitAcrossNonDataLinesIsHidden: go-openai joins every non-data line into the stream's error, so a key
// broken over two of them would pass a scrubber that looks at one line at a time; such lines are not passed on.
func TestKeySplitAcrossNonDataLinesIsHidden(t *testing.T) {
	_, err := streamReviewStream(t, streamReviewContent+
		`{"error":{"message":"you sent `+streamReviewKey[:12]+"\n"+streamReviewKey[12:]+`"}}`+"\n")
	if err == nil || err == io.EOF {
		t.Fatalf("the cut stream ended with %v", err)
	}
	if strings.Contains(fmt.Sprintf("%v %+v", err, err), streamReviewKey) {
		t.Errorf("the stream's error shows the key: %v", err)
	}
}

// TestEmptyErrorMemberDoesNotCutAStream: an "error" member that holds nothing ({}, as here) is not an error event,
// as OpenAI's clients read it: a complete stream with its [DONE] ends with io.EOF, and rests nothing.
func TestEmptyErrorMemberDoesNotCutAStream(t *testing.T) {
	text, err := streamReviewStream(t, streamReviewContent+
		"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"two\"}}],\"error\":{}}\n\n"+
		"data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n"+
		"data: [DONE]\n\n")
	if err != io.EOF {
		t.Errorf("a complete stream (text %q) ended with %v, not io.EOF", text, err)
	}
}

// TestErrorEventAnywhereReachesItsAPIError: an error event whose "error" member is not first goes on with its error
// alone, first, so that go-openai reads it and the caller's *StreamCutError reaches the service's *openai.APIError.
func TestErrorEventAnywhereReachesItsAPIError(t *testing.T) {
	_, err := streamReviewStream(t, streamReviewContent+
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
