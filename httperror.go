package failover

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"
)

// ErrorAnswer is how a request that failed is answered over HTTP: its status, the code and message of its error
// body, and when a retry can succeed. AnswerError decides it, in one place, for the gateway and for anything else
// that answers for a Client over HTTP, so that every such answer says the same thing of the same failure.
type ErrorAnswer struct {
	// Status is the HTTP status, such as 429, 404 or 502.
	Status int
	// Code is the error body's machine-readable code, such as "429" or "DeploymentNotFound".
	Code string
	// Message is the error's text, which the Client keeps free of secrets.
	Message string
	// RetryAt is when a retry can succeed; zero when it is not known.
	RetryAt time.Time
}

// StatusClientClosed is the status of a request whose caller went away before the answer (nginx's 499): nobody
// reads it, but access logs and metrics call it that.
const StatusClientClosed = 499

// AnswerError maps an error from a Client's call made with ctx to its HTTP answer:
//   - a body over its limit (*http.MaxBytesError): 413;
//   - no backend served it (*ExhaustedError): 429 with RetryAt when a backend comes back at a known time, which
//     every OpenAI and Azure client honours; 404 when every backend lacks the model; 503 with a one-second
//     RetryAt while the only candidates are being probed; 502 otherwise;
//   - ctx's deadline passed: 504; ctx was canceled: StatusClientClosed;
//   - anything else is the request's own fault (no model, a body that is not JSON): 400.
func AnswerError(ctx context.Context, err error) ErrorAnswer {
	var tooLarge *http.MaxBytesError
	var exhausted *ExhaustedError
	switch {
	case errors.As(err, &tooLarge):
		return ErrorAnswer{Status: http.StatusRequestEntityTooLarge, Code: "request_too_large",
			Message: "request body is larger than " + strconv.FormatInt(tooLarge.Limit, 10) + " bytes"}
	case errors.As(err, &exhausted):
		return exhausted.answer()
	case ctx.Err() == context.DeadlineExceeded:
		return ErrorAnswer{Status: http.StatusGatewayTimeout, Code: "timeout", Message: err.Error()}
	case ctx.Err() != nil:
		return ErrorAnswer{Status: StatusClientClosed, Code: "canceled", Message: err.Error()}
	default:
		return ErrorAnswer{Status: http.StatusBadRequest, Code: "invalid_request", Message: err.Error()}
	}
}

// answer is the HTTP answer to a request no backend served (see AnswerError).
func (e *ExhaustedError) answer() ErrorAnswer {
	a := ErrorAnswer{Message: e.Error()}
	switch {
	case !e.RetryAt.IsZero():
		a.Status, a.Code, a.RetryAt = http.StatusTooManyRequests, "429", e.RetryAt
	case e.allMissing():
		a.Status, a.Code = http.StatusNotFound, "DeploymentNotFound"
	case e.anyProbing():
		a.Status, a.Code, a.RetryAt = http.StatusServiceUnavailable, "503", time.Now().Add(time.Second)
	default:
		a.Status, a.Code = http.StatusBadGateway, "502"
	}
	return a
}

// allMissing reports whether every backend lacked the model: declared without it, learned missing, or answering
// 404 now.
func (e *ExhaustedError) allMissing() bool {
	if len(e.Attempts)+len(e.Skipped) == 0 {
		return false
	}
	for _, s := range e.Skipped {
		if s.State != StateMissing {
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

// anyProbing reports whether a backend was passed over because it is being probed.
func (e *ExhaustedError) anyProbing() bool {
	for _, s := range e.Skipped {
		if s.State == StateProbing {
			return true
		}
	}
	return false
}

// apiError is an error body in the shape both Azure OpenAI and OpenAI use, so that either kind of client parses
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

// Body is the answer's error body, in the shape both Azure OpenAI and OpenAI use: its type is server_error for a
// 5xx status and invalid_request_error otherwise.
func (a ErrorAnswer) Body() []byte {
	kind := "invalid_request_error"
	if a.Status >= 500 {
		kind = "server_error"
	}
	data, _ := json.Marshal(apiError{Error: apiErrorBody{Message: a.Message, Type: kind, Code: a.Code}}) // strings only: cannot fail
	return data
}

// Write answers w with the status and error body, and with Retry-After (whole seconds, rounded up) and
// retry-after-ms, as Azure sends them on a 429, when RetryAt is set. It writes nothing for StatusClientClosed:
// nobody is there to read it.
func (a ErrorAnswer) Write(w http.ResponseWriter) {
	if a.Status == StatusClientClosed {
		return
	}
	h := w.Header()
	if !a.RetryAt.IsZero() {
		d := max(time.Until(a.RetryAt), time.Millisecond)
		h.Set("Retry-After", strconv.FormatInt(int64((d+time.Second-1)/time.Second), 10))
		h.Set("Retry-After-Ms", strconv.FormatInt(int64((d+time.Millisecond-1)/time.Millisecond), 10))
	}
	data := a.Body()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(data)))
	w.WriteHeader(a.Status)
	_, _ = w.Write(data)
}
