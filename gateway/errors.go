package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/aoai-failover/failover"
)

// apiError is an error answer in the shape both Azure OpenAI and OpenAI use, so that either kind of client parses
// it into its own error type (go-openai's *openai.APIError, the npm package's APIError).
type apiError struct {
	Error apiErrorBody `json:"error"`
}

type apiErrorBody struct {
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    string  `json:"code"`
}

// writeError answers with status and an error body; code is the error's machine-readable code.
func writeError(w http.ResponseWriter, status int, code, message string) {
	kind := "invalid_request_error"
	if status >= 500 {
		kind = "server_error"
	}
	data, _ := json.Marshal(apiError{Error: apiErrorBody{Message: message, Type: kind, Code: code}}) // strings only: cannot fail
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(data)))
	w.WriteHeader(status)
	_, _ = w.Write(data)
}

// errorAnswer is how the gateway answers an error from the client: its status, code and message, and when a retry
// can succeed (zero if unknown).
type errorAnswer struct {
	status  int
	code    string
	message string
	retryAt time.Time
}

// answerFor maps an error from failover.Client.Do to an answer. The message is the error's text, which the client
// keeps free of secrets.
func answerFor(ctx context.Context, err error) errorAnswer {
	var tooLarge *http.MaxBytesError
	var exhausted *failover.ExhaustedError
	switch {
	case errors.As(err, &tooLarge):
		return errorAnswer{status: http.StatusRequestEntityTooLarge, code: "request_too_large",
			message: "request body is larger than " + strconv.FormatInt(tooLarge.Limit, 10) + " bytes"}
	case errors.As(err, &exhausted):
		return exhaustedAnswer(exhausted)
	case ctx.Err() == context.DeadlineExceeded:
		return errorAnswer{status: http.StatusGatewayTimeout, code: "timeout", message: err.Error()}
	case ctx.Err() != nil:
		// The caller went away: nobody reads this; 499 is what access logs and metrics call it.
		return errorAnswer{status: statusClientClosed, code: "canceled", message: err.Error()}
	default:
		// The request itself: no model, a body that is not JSON.
		return errorAnswer{status: http.StatusBadRequest, code: "invalid_request", message: err.Error()}
	}
}

// statusClientClosed is nginx's status for a request whose caller closed the connection before the answer.
const statusClientClosed = 499

// exhaustedAnswer answers a request no backend served. When a backend comes back at a known time the caller
// gets 429 with Retry-After, which every OpenAI and Azure client honours; when every backend lacks the model, 404;
// while the only candidates are being probed, 503 with a one-second Retry-After; otherwise 502.
func exhaustedAnswer(e *failover.ExhaustedError) errorAnswer {
	a := errorAnswer{message: e.Error()}
	switch {
	case !e.RetryAt.IsZero():
		a.status, a.code, a.retryAt = http.StatusTooManyRequests, "429", e.RetryAt
	case allMissing(e):
		a.status, a.code = http.StatusNotFound, "DeploymentNotFound"
	case anyProbing(e):
		a.status, a.code, a.retryAt = http.StatusServiceUnavailable, "503", time.Now().Add(time.Second)
	default:
		a.status, a.code = http.StatusBadGateway, "502"
	}
	return a
}

// allMissing reports whether every backend lacked the model: declared without it, learned missing, or answering
// 404 now.
func allMissing(e *failover.ExhaustedError) bool {
	if len(e.Attempts)+len(e.Skipped) == 0 {
		return false
	}
	for _, s := range e.Skipped {
		if s.State != failover.StateMissing {
			return false
		}
	}
	for _, a := range e.Attempts {
		if a.Status != http.StatusNotFound {
			return false
		}
	}
	return true
}

func anyProbing(e *failover.ExhaustedError) bool {
	for _, s := range e.Skipped {
		if s.State == failover.StateProbing {
			return true
		}
	}
	return false
}

// setRetryAfter sets Retry-After (whole seconds, rounded up) and retry-after-ms, as Azure does on a 429.
func setRetryAfter(h http.Header, at time.Time) {
	d := max(time.Until(at), time.Millisecond)
	h.Set("Retry-After", strconv.FormatInt(int64((d+time.Second-1)/time.Second), 10))
	h.Set("Retry-After-Ms", strconv.FormatInt(int64((d+time.Millisecond-1)/time.Millisecond), 10))
}
