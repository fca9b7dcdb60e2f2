package failover

import (
	"context"

	openai "github.com/sashabaranov/go-openai"
)

// The Responses API in go-openai's types, with failover. A create that names no stored state fails over like a
// chat completion; one that names it (PreviousResponseID, input items with ids, encrypted reasoning) goes to the
// region that made it, and fails with ErrStoredStateUnavailable rather than go where the state is not. Requests by
// id go where the response was made. openai-go callers get the same through the Client as an http.RoundTripper.

// CreateResponse creates a model response with failover, as go-openai's Client.CreateResponse does. An empty
// Model is replaced by the client's model. Its errors are those of CreateChatCompletion, and an error matching
// ErrStoredStateUnavailable when the one region that holds the state the request names cannot take it now.
func (c *Client) CreateResponse(ctx context.Context, req openai.CreateResponseRequest) (openai.CreateResponseResponse, error) {
	if req.Model == "" {
		if c.model == "" {
			return openai.CreateResponseResponse{}, errNoModel
		}
		req.Model = c.model
	}
	return c.api.CreateResponse(ctx, req)
}

// CreateResponseStream starts a streamed model response with failover, as go-openai's
// Client.CreateResponseStream does: a failure before the first output (any *.delta event) moves the request on
// unseen, and one after it ends the stream with an error matching ErrStreamCut, never with io.EOF, which Recv
// returns only after response.completed or response.incomplete. An empty Model is replaced by the client's
// model. The caller must Close the stream.
func (c *Client) CreateResponseStream(ctx context.Context, req openai.CreateResponseRequest) (*openai.ResponseStream, error) {
	if req.Model == "" {
		if c.model == "" {
			return nil, errNoModel
		}
		req.Model = c.model
	}
	return c.api.CreateResponseStream(ctx, req)
}

// GetResponse retrieves a stored response from the region that made it, as go-openai's Client.RetrieveResponse
// does. A response the Client did not see made is sought in the regions in order.
func (c *Client) GetResponse(ctx context.Context, id string, options ...openai.RetrieveResponseOptions) (openai.CreateResponseResponse, error) {
	return c.api.RetrieveResponse(ctx, id, options...)
}

// DeleteResponse deletes a stored response in the region that made it.
func (c *Client) DeleteResponse(ctx context.Context, id string) (openai.ResponseDeleteResponse, error) {
	return c.api.DeleteResponse(ctx, id)
}
