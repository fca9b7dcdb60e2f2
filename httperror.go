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

// AnswerError maps an error from a Client's call made with ctx to its HTTP answer. It is the one status mapping:
// RoundTrip, Do and the gateway answer with it.
//   - a body over its limit (*http.MaxBytesError, or over the Client's own): 413;
//   - no backend served it (*ExhaustedError): 429 with RetryAt when the regions are throttled; 404 when every
//     backend lacks the model; 502 when the regions refused the Client's own credentials (not the caller's); 503
//     with RetryAt when they rest for other reasons (5xx, timeouts, no answer), or with a one-second RetryAt while
//     the only candidates are being probed; 502 otherwise;
//   - an operation the Client does not route: 404;
//   - ctx's deadline passed: 504; ctx was canceled: StatusClientClosed;
//   - anything else is the request's own fault (no model, a body that is not JSON): 400.
func AnswerError(ctx context.Context, err error) ErrorAnswer {
	var tooLarge *http.MaxBytesError
	var exhausted *ExhaustedError
	switch {
	case errors.As(err, &tooLarge):
		return ErrorAnswer{Status: http.StatusRequestEntityTooLarge, Code: "request_too_large",
			Message: "request body is larger than " + strconv.FormatInt(tooLarge.Limit, 10) + " bytes"}
	case errors.Is(err, errBodyTooLarge):
		return ErrorAnswer{Status: http.StatusRequestEntityTooLarge, Code: "request_too_large", Message: err.Error()}
	case errors.As(err, &exhausted):
		return exhausted.answer()
	case errors.Is(err, ErrAnswerBudget):
		// The caller's own memory limit (WithAnswerBudget): it is full now, and its requests end every second or so.
		return ErrorAnswer{Status: http.StatusServiceUnavailable, Code: "answer_budget_exceeded", Message: err.Error(),
			RetryAt: time.Now().Add(time.Second)}
	case errors.Is(err, errUnsupportedOperation):
		return ErrorAnswer{Status: http.StatusNotFound, Code: "404", Message: err.Error()}
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
	why := e.why()
	switch {
	case e.HeldBy != "":
		// Only that region can answer: whatever it suffers from, the caller waits for it.
		a.Status, a.Code, a.RetryAt = http.StatusServiceUnavailable, "stored_state_unavailable", e.RetryAt
		a.Message = "failover: only region " + e.HeldBy + " can take this request (it holds the state the request names, or the request is pinned to it), and it is unavailable: " + a.Message
	case why[whyThrottled] > 0 && !e.RetryAt.IsZero():
		a.Status, a.Code, a.RetryAt = http.StatusTooManyRequests, "429", e.RetryAt
	case why.only(whyMissing):
		a.Status, a.Code = http.StatusNotFound, "DeploymentNotFound"
	case why[whyRefused] > 0 && why.only(whyRefused, whyMissing):
		a.Status, a.Code = http.StatusBadGateway, "upstream_credentials_refused"
		a.Message = "failover: the regions refused this client's own credentials (its keys or identity, not the caller's): " + a.Message
	case !e.RetryAt.IsZero():
		a.Status, a.Code, a.RetryAt = http.StatusServiceUnavailable, "503", e.RetryAt
	case why[whyProbing] > 0:
		a.Status, a.Code, a.RetryAt = http.StatusServiceUnavailable, "503", time.Now().Add(time.Second)
	default:
		a.Status, a.Code = http.StatusBadGateway, "502"
	}
	return a
}

// reason is why a backend did not serve a request, as the status mapping tells them apart.
type reason uint8

const (
	whyFailing   reason = iota // 5xx, a timeout, no answer: it rests and comes back
	whyThrottled               // 429: its quota is out for now
	whyMissing                 // it lacks the model
	whyRefused                 // it refused the client's credentials or account (401, 403, insufficient_quota)
	whyProbing                 // another request probes it
	reasons
)

// tally counts the backends of an ExhaustedError by reason.
type tally [reasons]int

// only reports whether every backend counted is for one of the reasons rs, and there is at least one.
func (t tally) only(rs ...reason) bool {
	n := 0
	for _, r := range rs {
		n += t[r]
	}
	total := 0
	for _, c := range t {
		total += c
	}
	return total > 0 && n == total
}

// identityRefused reports whether err is a region's Entra ID credential that cannot work here (rested as a fault,
// as a 401 is), rather than an identity service that is down for now.
func identityRefused(err error) bool {
	var ce *CredentialError
	return errors.As(err, &ce) && credentialRest(ce.Err) == restFault
}

// why counts the attempts and the backends passed over by reason.
func (e *ExhaustedError) why() tally {
	var t tally
	for _, a := range e.Attempts {
		switch {
		case a.Status == http.StatusTooManyRequests && !isInsufficientQuota(a.Err):
			t[whyThrottled]++
		case a.Status == http.StatusNotFound || missingModel(a.Err): // other 404s are not failed over
			t[whyMissing]++
		case a.Status == http.StatusUnauthorized || a.Status == http.StatusForbidden || isInsufficientQuota(a.Err) ||
			identityRefused(a.Err):
			t[whyRefused]++
		default:
			t[whyFailing]++
		}
	}
	for _, s := range e.Skipped {
		switch {
		case s.State == StateMissing:
			t[whyMissing]++
		case s.State == StateProbing:
			t[whyProbing]++
		case s.kind == restThrottled:
			t[whyThrottled]++
		case s.kind == restFault:
			t[whyRefused]++
		default:
			t[whyFailing]++
		}
	}
	return t
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

// Write answers w with the status and error body, Retry-After and retry-after-ms when RetryAt is set, and
// x-should-retry: false. It writes nothing for StatusClientClosed: nobody is there to read it.
func (a ErrorAnswer) Write(w http.ResponseWriter) {
	if a.Status == StatusClientClosed {
		return
	}
	data := a.Body()
	a.header(w.Header(), len(data))
	w.WriteHeader(a.Status)
	_, _ = w.Write(data)
}

// response is the answer as the HTTP response to req that RoundTrip returns.
func (a ErrorAnswer) response(req *http.Request) *http.Response {
	data := a.Body()
	h := make(http.Header, 5)
	a.header(h, len(data))
	return &http.Response{Status: strconv.Itoa(a.Status) + " " + http.StatusText(a.Status), StatusCode: a.Status,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Header: h, Body: newBodyReader(data),
		ContentLength: int64(len(data)), Request: req}
}

// header sets the answer's headers for a body of n bytes: its type and length; Retry-After (whole seconds,
// rounded up) and retry-after-ms, as Azure sends them on a 429, when RetryAt is set; and x-should-retry: false,
// which the OpenAI SDKs obey: the Client has already tried every backend it could, and an SDK's own retries would
// run the whole pass again.
func (a ErrorAnswer) header(h http.Header, n int) {
	if !a.RetryAt.IsZero() {
		d := max(time.Until(a.RetryAt), time.Millisecond)
		h.Set("Retry-After", strconv.FormatInt(int64((d+time.Second-1)/time.Second), 10))
		h.Set("Retry-After-Ms", strconv.FormatInt(int64((d+time.Millisecond-1)/time.Millisecond), 10))
	}
	h.Set("X-Should-Retry", "false")
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(n))
}
