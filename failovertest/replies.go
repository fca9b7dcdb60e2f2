package failovertest

import (
	"fmt"
	"math"
	"net/http"
	"strconv"
	"time"
)

// Reply is one scripted answer of a fake server. The zero Reply is a successful answer with default content.
type Reply struct {
	// Status is the HTTP status; 0 means 200.
	Status int
	// Header holds extra headers, set on top of the ones the service always sends.
	Header http.Header
	// Body replaces the answer's JSON body. Empty: a body made for the status and operation (a completion, an
	// embedding, or Azure's error body for the status).
	Body string
	// Content is the assistant's text in a default successful answer. Empty: "Hello from <server name>."
	Content string
	// Delay holds the answer back; the wait ends early if the client gives up.
	Delay time.Duration
	// BodyDelay holds the body back after the status and headers have been sent, as a server that stalls
	// mid-answer does.
	BodyDelay time.Duration
	// Hang never answers: the handler returns only when the client gives up or the server closes.
	Hang bool
	// Disconnect closes the connection without answering, as a crashed or reset server does.
	Disconnect bool
	// StreamCutAfter, for a streaming request, ends the connection after this many content chunks, without the
	// final [DONE] event. 0 streams the whole answer.
	StreamCutAfter int
	// StreamErrorAt, for a streaming request, sends an error event (server_error, as the service does when it
	// fails mid-answer) in place of content chunk number StreamErrorAt, then ends the stream without [DONE]. 1
	// sends it before any content. 0 sends none.
	//
	// On a streamed Responses API create, StreamCutAfter and StreamErrorAt count response.output_text.delta
	// events, the error is an "event: error", and the stream ends without response.completed (it has no [DONE]
	// either way); the response is then not stored. BodyDelay applies to those streams too.
	StreamErrorAt int
	// StreamStallAfter, for a streaming request, goes silent after this many content chunks (or Responses
	// deltas), holding the connection open for StreamStall (0: until the client gives up), then goes on, as a
	// region that stalls mid-answer does. 0 never stalls.
	StreamStallAfter int
	// StreamStall is how long a StreamStallAfter stall lasts; 0 lasts until the client gives up.
	StreamStall time.Duration
	// StreamMalformedAt, for a streaming request, sends a chunk (or Responses delta) broken off mid-JSON in place
	// of content chunk number StreamMalformedAt (1: before any content), then goes on with the rest, as a
	// misbehaving proxy or provider might: a client that skips what it cannot parse would take the answer, one
	// word short, for whole. 0 sends none.
	StreamMalformedAt int
	// NoDone ends a complete chat stream (every choice finished) without the final "data: [DONE]", as some
	// OpenAI-compatible servers do.
	NoDone bool
	// EmptyBody answers with no body at all (Content-Length: 0), whatever the status, as a broken proxy might.
	EmptyBody bool
}

// OK answers successfully with content as the assistant's text.
func OK(content string) Reply { return Reply{Content: content} }

// RateLimited answers 429 as Azure does when a deployment's tokens-per-minute quota is spent, with retry-after
// (whole seconds, rounded up) and retry-after-ms headers. A retryAfter of 0 sends no retry headers.
func RateLimited(retryAfter time.Duration) Reply {
	secs := int(math.Ceil(retryAfter.Seconds()))
	r := Reply{
		Status: http.StatusTooManyRequests,
		Header: http.Header{
			"X-Ratelimit-Remaining-Requests": {"0"},
			"X-Ratelimit-Remaining-Tokens":   {"0"},
		},
		Body: azureError("429", fmt.Sprintf("Requests to the ChatCompletions_Create Operation under Azure OpenAI API version 2024-10-21 have exceeded token rate limit of your current OpenAI S0 pricing tier. Please retry after %d seconds. Please go here: https://aka.ms/oai/quotaincrease if you would like to further increase the default rate limit.", max(secs, 1))),
	}
	if retryAfter > 0 {
		r.Header.Set("Retry-After", strconv.Itoa(secs))
		r.Header.Set("Retry-After-Ms", strconv.FormatInt(retryAfter.Milliseconds(), 10))
	}
	return r
}

// InternalError answers 500 with Azure's server_error body.
func InternalError() Reply {
	return Reply{Status: http.StatusInternalServerError,
		Body: `{"error":{"message":"The server had an error processing your request. Sorry about that! You can retry your request, or contact us through an Azure support request at: https://go.microsoft.com/fwlink/?linkid=2213926 if you keep seeing this error.","type":"server_error","param":null,"code":null}}`}
}

// Unavailable answers 503 Service Unavailable.
func Unavailable() Reply {
	return Reply{Status: http.StatusServiceUnavailable,
		Body: azureError("503", "The service is temporarily unable to process your request. Please try again later.")}
}

// RequestTimeout answers 408 as Azure does when the model took too long.
func RequestTimeout() Reply {
	return Reply{Status: http.StatusRequestTimeout, Body: azureError("Timeout", "The operation was timeout.")}
}

// Unauthorized answers 401 as Azure does for a wrong key. A fake server answers it by itself to a wrong key.
func Unauthorized() Reply {
	return Reply{Status: http.StatusUnauthorized, Body: azureError("401", "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key for an active subscription and use a correct regional API endpoint for your resource.")}
}

// DeploymentNotFound answers 404 as Azure does when the region has no deployment of that name.
func DeploymentNotFound() Reply {
	return Reply{Status: http.StatusNotFound, Body: azureError("DeploymentNotFound", "The API deployment for this resource does not exist. If you created the deployment within the last 5 minutes, please wait a moment and try again.")}
}

// BadRequest answers 400 invalid_request_error with message.
func BadRequest(message string) Reply {
	return Reply{Status: http.StatusBadRequest,
		Body: fmt.Sprintf(`{"error":{"message":%q,"type":"invalid_request_error","param":null,"code":null}}`, message)}
}

// ContentFilter answers 400 as Azure does when the prompt trips the content filter.
func ContentFilter() Reply {
	return Reply{Status: http.StatusBadRequest, Body: `{"error":{"message":"The response was filtered due to the prompt triggering Azure OpenAI's content management policy. Please modify your prompt and retry.","type":null,"param":"prompt","code":"content_filter","status":400,"innererror":{"code":"ResponsibleAIPolicyViolation","content_filter_result":{"hate":{"filtered":true,"severity":"high"},"self_harm":{"filtered":false,"severity":"safe"},"sexual":{"filtered":false,"severity":"safe"},"violence":{"filtered":false,"severity":"safe"}}}}}`}
}

// ContextLengthExceeded answers 400 as the service does when the prompt is longer than the model's context.
func ContextLengthExceeded() Reply {
	return Reply{Status: http.StatusBadRequest, Body: `{"error":{"message":"This model's maximum context length is 128000 tokens. However, your messages resulted in 130412 tokens. Please reduce the length of the messages.","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}`}
}

// InsufficientQuota answers 429 as the public OpenAI API does when the account is out of credit.
func InsufficientQuota() Reply {
	return Reply{Status: http.StatusTooManyRequests, Body: `{"error":{"message":"You exceeded your current quota, please check your plan and billing details. For more information on this error, read the docs: https://platform.openai.com/docs/guides/error-codes/api-errors.","type":"insufficient_quota","param":null,"code":"insufficient_quota"}}`}
}

// StreamFailure answers a streaming request with a stream that breaks off with an error event in place of
// content chunk number at (1: before any content).
func StreamFailure(at int) Reply { return Reply{StreamErrorAt: at} }

// Hang never answers.
func Hang() Reply { return Reply{Hang: true} }

// Disconnect closes the connection without answering.
func Disconnect() Reply { return Reply{Disconnect: true} }

// Malformed answers 200 with a body that is not JSON.
func Malformed() Reply { return Reply{Body: `{"id":"chatcmpl-1","choices":[{"mess`} }

// Empty answers 200 with no body at all.
func Empty() Reply { return Reply{EmptyBody: true} }

// Slow answers like r, after d.
func Slow(d time.Duration, r Reply) Reply {
	r.Delay = d
	return r
}

func azureError(code, message string) string {
	return fmt.Sprintf(`{"error":{"code":%q,"message":%q}}`, code, message)
}

// OpenAIRateLimited answers 429 as the public OpenAI API does when a rate limit is hit: code rate_limit_exceeded,
// x-ratelimit-reset-* headers in Go duration syntax, and a retry-after header (whole seconds, rounded up) unless
// retryAfter is 0.
func OpenAIRateLimited(retryAfter time.Duration) Reply {
	r := Reply{
		Status: http.StatusTooManyRequests,
		Header: http.Header{
			"X-Ratelimit-Remaining-Requests": {"0"},
			"X-Ratelimit-Remaining-Tokens":   {"0"},
			"X-Ratelimit-Reset-Requests":     {retryAfter.String()},
			"X-Ratelimit-Reset-Tokens":       {retryAfter.String()},
		},
		Body: fmt.Sprintf(`{"error":{"message":"Rate limit reached for gpt-4o in organization org-test on tokens per min (TPM): Limit 30000, Used 30000, Requested 100. Please try again in %.3fs.","type":"tokens","param":null,"code":"rate_limit_exceeded"}}`, retryAfter.Seconds()),
	}
	if retryAfter > 0 {
		r.Header.Set("Retry-After", strconv.Itoa(int(math.Ceil(retryAfter.Seconds()))))
	}
	return r
}
