package failover

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"

	openai "github.com/sashabaranov/go-openai"
)

// ChatCompletionStream is a streamed chat completion, served by one backend after failover: a failure before the
// first content (an error status, an error event, a stream that ends or stalls) moved the request on unseen. A
// failure after it ends the stream with a *StreamCutError: never with io.EOF, which Recv returns only after the
// stream's complete end. It is not safe for concurrent use, except Close, which may be called while Recv waits.
type ChatCompletionStream struct {
	inner    *openai.ChatCompletionStream
	attempts []Attempt
	text     strings.Builder // the first choice's text so far
	err      error           // returned by every Recv after the stream ended
}

// CreateChatCompletionStream starts a streamed chat completion with failover, as go-openai's
// Client.CreateChatCompletionStream does. An empty Model is replaced by the client's model. Its errors are those
// of CreateChatCompletion. The caller must Close the stream.
func (c *Client) CreateChatCompletionStream(ctx context.Context, req openai.ChatCompletionRequest) (*ChatCompletionStream, error) {
	if req.Model == "" {
		if c.model == "" {
			return nil, errNoModel
		}
		req.Model = c.model
	}
	rec := new(record)
	inner, err := c.api.CreateChatCompletionStream(withRecord(ctx, rec), req)
	if err != nil {
		return nil, err
	}
	return &ChatCompletionStream{inner: inner, attempts: rec.attempts}, nil
}

// Recv returns the next chunk; io.EOF after the last one; a *StreamCutError when the stream broke off.
func (s *ChatCompletionStream) Recv() (openai.ChatCompletionStreamResponse, error) {
	if s.err != nil {
		return openai.ChatCompletionStreamResponse{}, s.err
	}
	chunk, err := s.inner.Recv()
	switch {
	case err == nil:
		for _, c := range chunk.Choices {
			if c.Index == 0 {
				s.text.WriteString(c.Delta.Content)
			}
		}
		return chunk, nil
	case errors.Is(err, io.EOF):
		s.err = io.EOF
	default:
		s.err = &StreamCutError{Region: s.Region(), Received: s.text.String(), Err: err}
	}
	return openai.ChatCompletionStreamResponse{}, s.err
}

// Close ends the stream and releases its connection.
func (s *ChatCompletionStream) Close() error { return s.inner.Close() }

// Region is the name of the backend serving the stream.
func (s *ChatCompletionStream) Region() string { return s.attempts[len(s.attempts)-1].Region }

// Header is the serving backend's response headers (x-ms-region, x-ratelimit-remaining-*).
func (s *ChatCompletionStream) Header() http.Header { return s.attempts[len(s.attempts)-1].Header }

// Attempts lists the attempts that led to the stream, the serving one last.
func (s *ChatCompletionStream) Attempts() []Attempt { return s.attempts }

// CreateEmbeddings computes embeddings with failover, as go-openai's Client.CreateEmbeddings does. The request
// goes only to backends that have its model: a region whose declared deployments (Region.Deployments) lack it,
// or which answered 404 for it, never receives it. A request without a model fails at once: the client's model
// (WithModel) is a chat model, not an embeddings one.
func (c *Client) CreateEmbeddings(ctx context.Context, conv openai.EmbeddingRequestConverter) (openai.EmbeddingResponse, error) {
	req := conv.Convert()
	if req.Model == "" {
		return openai.EmbeddingResponse{}, errNoEmbeddingsModel
	}
	return c.api.CreateEmbeddings(ctx, req) // an EmbeddingRequest is its own converter

}

var errNoEmbeddingsModel = errors.New("failover: the embeddings request names no model; set its Model to the model of an embeddings deployment, such as text-embedding-3-small")
