package failovertest_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/aoai-failover/failover/failovertest"
	openai "github.com/sashabaranov/go-openai"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// ReadStream reads a stream of a fake region to its end and returns its text.
func ExampleReadStream() {
	region := failovertest.NewRegion("eastus")
	defer region.Close()
	region.Script(failovertest.OK("one two three"))

	cfg := openai.DefaultAzureConfig(region.Key, region.URL)
	transport := &http.Transport{}
	defer transport.CloseIdleConnections()
	cfg.HTTPClient = &http.Client{Transport: transport}
	stream, err := openai.NewClientWithConfig(cfg).CreateChatCompletionStream(context.Background(),
		openai.ChatCompletionRequest{Model: "gpt-4o", Messages: []openai.ChatCompletionMessage{{Role: "user", Content: "Count."}}})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer stream.Close()
	text, err := failovertest.ReadStream(stream)
	fmt.Printf("%q %v\n", text, err)
	// Output: "one two three" <nil>
}

// endless is a stream that never ends: every chunk says "x".
type endless struct{ calls int }

func (e *endless) Recv() (openai.ChatCompletionStreamResponse, error) {
	e.calls++
	return openai.ChatCompletionStreamResponse{Choices: []openai.ChatCompletionStreamChoice{
		{Delta: openai.ChatCompletionStreamChoiceDelta{Content: "x"}}}}, nil
}

// scripted is a stream that returns its chunks' contents (one choice each, or none for "") and then err.
type scripted struct {
	contents []string
	err      error
}

func (s *scripted) Recv() (openai.ChatCompletionStreamResponse, error) {
	if len(s.contents) == 0 {
		return openai.ChatCompletionStreamResponse{}, s.err
	}
	var chunk openai.ChatCompletionStreamResponse
	if c := s.contents[0]; c != "" {
		chunk.Choices = []openai.ChatCompletionStreamChoice{
			{Index: 0, Delta: openai.ChatCompletionStreamChoiceDelta{Content: c}},
			{Index: 1, Delta: openai.ChatCompletionStreamChoiceDelta{Content: "|" + c}}}
	}
	s.contents = s.contents[1:]
	return chunk, nil
}

func TestReadStream(t *testing.T) {
	t.Run("clean end", func(t *testing.T) {
		text, err := failovertest.ReadStream(&scripted{contents: []string{"one ", "", "two"}, err: io.EOF})
		require.NoError(t, err, "io.EOF is the clean end")
		assert.Equal(t, "one |one two|two", text, "every choice's delta content, in order")
	})
	t.Run("wrapped EOF", func(t *testing.T) {
		_, err := failovertest.ReadStream(&scripted{err: fmt.Errorf("done: %w", io.EOF)})
		assert.NoError(t, err)
	})
	t.Run("error", func(t *testing.T) {
		cut := errors.New("connection reset")
		text, err := failovertest.ReadStream(&scripted{contents: []string{"one "}, err: cut})
		assert.Same(t, cut, err, "the error Recv returned, as it returned it")
		assert.Equal(t, "one |one ", text, "the text received before the error")
	})
	t.Run("no end", func(t *testing.T) {
		e := &endless{}
		text, err := failovertest.ReadStream(e)
		require.Error(t, err)
		assert.Contains(t, err.Error(), "did not end")
		assert.Equal(t, 1000, e.calls)
		assert.Equal(t, strings.Repeat("x", 1000), text)
	})
}
