package failovertest

import (
	"errors"
	"fmt"
	"io"
	"strings"

	openai "github.com/sashabaranov/go-openai"
)

// maxStreamChunks bounds how many chunks ReadStream reads, so that a stream that never ends fails a test instead
// of hanging it.
const maxStreamChunks = 1000

// ReadStream reads a chat completion stream to its end and returns its text: the delta content of every choice
// of every chunk, in order. stream is go-openai's *openai.ChatCompletionStream, a *failover.ChatCompletionStream,
// or anything else with their Recv.
//
// The error is nil when the stream ended cleanly (Recv returned io.EOF); otherwise it is the error Recv returned,
// as it returned it, with the text received before it. A stream still sending after 1000 chunks is not read
// further: ReadStream returns the text so far and an error saying the stream did not end.
// ReadStream does not close the stream.
func ReadStream(stream interface {
	Recv() (openai.ChatCompletionStreamResponse, error)
}) (string, error) {
	var text strings.Builder
	for range maxStreamChunks {
		chunk, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return text.String(), nil
		}
		if err != nil {
			return text.String(), err
		}
		for _, c := range chunk.Choices {
			text.WriteString(c.Delta.Content)
		}
	}
	return text.String(), fmt.Errorf("failovertest: the stream did not end within %d chunks", maxStreamChunks)
}
