package failover

import (
	"errors"
	"fmt"
	"net/http"
)

// RoundTrip sends one OpenAI API request with failover: it makes the Client an http.RoundTripper, so that
// &http.Client{Transport: client} carries the requests of any SDK that takes an *http.Client (openai-go, its
// azure package, go-openai, the Azure SDK) to the regions in order. Whatever the request's base URL, key and
// api-version, each backend's own are used: the request's host is ignored; its path must end in
// /chat/completions, /completions or /embeddings (the OpenAI shape /v1/chat/completions, Azure's v1
// /openai/v1/chat/completions or the classic /openai/deployments/{deployment}/chat/completions, whose deployment
// is taken for the model when the JSON body names none); its auth headers are dropped and each backend's own are
// sent; a newer api-version than a classic region's own is kept. A request with GetBody (as http.NewRequest
// gives an in-memory body) has it called for each attempt, as net/http does for its own retries, so GetBody must
// return the same bytes as Body.
//
// RoundTrip returns an error only when the request's context ends. Every other failure is an HTTP answer with an
// Azure- and OpenAI-shaped error body that names the regions tried, and x-should-retry: false, so that an SDK
// takes it for what it is instead of running the whole failover pass again: 429 with Retry-After when the
// regions are throttled, 503 with Retry-After when they rest for other reasons, 404 when no region has the
// model, 502 when the regions refused the Client's own credentials, 400 for a request that cannot be sent (413
// for one too large). A region's own refusal of the request itself (400 for a content filter or a context too
// long, 404 for a wrong path) comes back as the region sent it. AnswerError documents the mapping.
func (c *Client) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := c.engine.Do(req)
	if err == nil {
		return resp, nil
	}
	ctx := req.Context()
	if ctx.Err() != nil {
		if !errors.Is(err, ctx.Err()) {
			// It ended as the request gave up for another reason: the context's end wins.
			err = fmt.Errorf("failover: request ended by its context: %w (as it failed: %w)", ctx.Err(), err)
		}
		return nil, err
	}
	return AnswerError(ctx, err).response(req), nil
}

// Do is RoundTrip: it makes the Client an HTTP doer for SDKs that take one (go-openai's HTTPClient, openai-go's
// option.WithHTTPClient). See ExampleClient_Do. The typed methods (CreateChatCompletion and the others) return
// errors instead: an *ExhaustedError when no backend served the request.
func (c *Client) Do(req *http.Request) (*http.Response, error) { return c.RoundTrip(req) }
