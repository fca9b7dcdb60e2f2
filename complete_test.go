package failover_test

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/aoai-failover/failover"
	"github.com/aoai-failover/failover/failovertest"
	openai "github.com/sashabaranov/go-openai"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// readChat reads a chat stream to its end: the text of each choice, and the error that ended it.
func readChat(t *testing.T, client *failover.Client, req openai.ChatCompletionRequest) (map[int]string, error) {
	t.Helper()
	stream, err := client.CreateChatCompletionStream(t.Context(), req)
	require.NoError(t, err)
	defer stream.Close()
	text := map[int]string{}
	for range 1000 {
		chunk, err := stream.Recv()
		if err != nil {
			return text, err
		}
		for _, c := range chunk.Choices {
			text[c.Index] += c.Delta.Content
		}
	}
	return text, errors.New("stream did not end")
}

// TestStreamCompleteWithoutDone: a stream that ends cleanly without "data: [DONE]" (as some OpenAI-compatible
// servers end them) is complete when its choice has finished, with the usage chunk when it was asked for: io.EOF,
// not a cut, and the region does not rest.
func TestStreamCompleteWithoutDone(t *testing.T) {
	for name, usage := range map[string]bool{"plain": false, "with usage": true} {
		t.Run(name, func(t *testing.T) {
			servers := startRegions(t, []string{"eastus", "westus"})
			client := newClient(t, regionsOf(servers...))
			servers[0].Script(failovertest.Reply{NoDone: true}, failovertest.Reply{NoDone: true})
			req := openai.ChatCompletionRequest{Messages: hello(), Stream: true}
			if usage {
				req.StreamOptions = &openai.StreamOptions{IncludeUsage: true}
			}
			text, err := readChat(t, client, req)
			require.ErrorIs(t, err, io.EOF)
			assert.Equal(t, "Hello from eastus.", text[0])

			text, err = readChat(t, client, req)
			require.ErrorIs(t, err, io.EOF)
			assert.Equal(t, "Hello from eastus.", text[0], "eastus did not rest")
		})
	}
}

// TestStreamWithoutDoneThatIsNotWholeIsCut: without [DONE], a stream is a cut when a choice asked for has not
// finished, when the usage asked for has not come, or when the body ended inside an event.
func TestStreamWithoutDoneThatIsNotWholeIsCut(t *testing.T) {
	chunk := func(index int, content, finish string) string {
		f := "null"
		if finish != "" {
			f = `"` + finish + `"`
		}
		return fmt.Sprintf(`data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{"index":%d,"delta":{"content":%q},"finish_reason":%s}]}`+"\n\n", index, content, f)
	}
	cases := map[string]struct {
		body  string
		n     int
		usage bool
	}{
		"second choice unfinished": {chunk(0, "a", "") + chunk(1, "b", "") + chunk(0, "", "stop"), 2, false},
		"usage missing":            {chunk(0, "a", "") + chunk(0, "", "stop"), 1, true},
		"ends inside an event":     {chunk(0, "a", "") + strings.TrimSuffix(chunk(0, "", "stop"), "\n"), 1, false},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/event-stream")
				fmt.Fprint(w, tc.body)
			}))
			t.Cleanup(srv.Close)
			client := newClient(t, []failover.Region{{Name: "eastus", Endpoint: srv.URL, APIKey: "key"}})
			req := openai.ChatCompletionRequest{Messages: hello(), Stream: true, N: tc.n}
			if tc.usage {
				req.StreamOptions = &openai.StreamOptions{IncludeUsage: true}
			}
			_, err := readChat(t, client, req)
			require.ErrorIs(t, err, failover.ErrStreamCut)
		})
	}
}

// TestStreamCompleteWithoutDoneSeveralChoices: with n=2, the stream is whole once both choices finished, in
// whatever chunks.
func TestStreamCompleteWithoutDoneSeveralChoices(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, `data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{"index":0,"delta":{"content":"a"},"finish_reason":null},{"index":1,"delta":{"content":"b"},"finish_reason":"stop"}]}`+"\n\n")
		fmt.Fprint(w, `data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{"index":0,"delta":{},"finish_reason": "length"}]}`+"\n\n")
	}))
	t.Cleanup(srv.Close)
	client := newClient(t, []failover.Region{{Name: "eastus", Endpoint: srv.URL, APIKey: "key"}})
	text, err := readChat(t, client, openai.ChatCompletionRequest{Messages: hello(), Stream: true, N: 2})
	require.ErrorIs(t, err, io.EOF)
	assert.Equal(t, map[int]string{0: "a", 1: "b"}, text)
}
