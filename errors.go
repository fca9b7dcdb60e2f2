package failover

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	openai "github.com/sashabaranov/go-openai"
)

// ErrExhausted is matched, with errors.Is, by every error that means no region and no fallback could serve a
// request. The error itself is an *ExhaustedError listing every attempt.
var ErrExhausted = errors.New("failover: no region could serve the request")

// ErrAttemptTimeout is matched by the cause of an attempt that outlived the attempt timeout (WithAttemptTimeout).
// It is deliberately not context.DeadlineExceeded: that error means the caller's own deadline has passed.
var ErrAttemptTimeout = errors.New("attempt timed out")

// ErrConfig is matched by every configuration error; each is a *ConfigError naming the field that is wrong.
var ErrConfig = errors.New("failover: invalid configuration")

// ExhaustedError is returned when every region, and the OpenAI fallback if configured, failed a request with an
// error that another backend might not have had. errors.As through it reaches the cause of the latest attempt
// first, so a caller finds the last *openai.APIError even when a later attempt failed without one.
type ExhaustedError struct {
	// Model is the model the request asked for.
	Model string
	// Attempts lists every attempt in the order they were made. It is empty when every backend was resting or
	// lacked the model.
	Attempts []Attempt
	// Skipped lists the backends the request did not try, because they were resting, being probed or lacking the
	// model, as they were when its last pass over the backends passed them over.
	Skipped []Skip
	// RetryAt is the soonest time a resting backend comes back, when a retry can succeed; zero when none is
	// known to (every candidate lacks the model, or is being probed).
	RetryAt time.Time
	// HeldBy is the region that holds the stored state the request names (a previous response, a stored item, a
	// file, a batch), when it is the only one the request could go to; the error then matches
	// ErrStoredStateUnavailable too. Empty otherwise.
	HeldBy string
	// Budget is the attempt budget (WithAttemptBudget) when the request ended because it was spent; 0 otherwise.
	Budget int
}

func (e *ExhaustedError) Error() string {
	var b strings.Builder
	b.WriteString(ErrExhausted.Error())
	if e.Model != "" {
		fmt.Fprintf(&b, " for model %q", e.Model)
	}
	fmt.Fprintf(&b, " (%d attempt", len(e.Attempts))
	if len(e.Attempts) != 1 {
		b.WriteString("s")
	}
	if len(e.Skipped) > 0 {
		fmt.Fprintf(&b, ", %d passed over", len(e.Skipped))
	}
	if !e.RetryAt.IsZero() {
		fmt.Fprintf(&b, ", retry at %s", e.RetryAt.UTC().Format(timeFormat))
	}
	if e.Budget > 0 {
		fmt.Fprintf(&b, ", attempt budget of %d spent", e.Budget)
	}
	b.WriteString(")")
	sep := ": "
	for _, a := range e.Attempts {
		b.WriteString(sep)
		b.WriteString(a.String())
		sep = "; "
	}
	for _, s := range e.Skipped {
		b.WriteString(sep)
		b.WriteString(s.String())
		sep = "; "
	}
	return b.String()
}

// timeFormat shows times in errors to the millisecond.
const timeFormat = "2006-01-02T15:04:05.000Z07:00"

// Skip is a backend a request passed over without an attempt.
type Skip struct {
	// Region is the backend's name.
	Region string
	// State is StateResting, StateProbing (another request's probe is in flight) or StateMissing.
	State State
	// Until is when the rest ends or a missing model is tried again; zero when unknown.
	Until time.Time
	// Reason says why, such as "429 rate limited".
	Reason string

	kind restKind // the rest's kind, for the status mapping (AnswerError)
}

// String describes the skip in one line, e.g. "eastus: resting until 2026-11-22T10:00:00Z (429 rate limited)".
func (s Skip) String() string {
	out := s.Region + ": " + s.State.String()
	if !s.Until.IsZero() {
		out += " until " + s.Until.UTC().Format(timeFormat)
	}
	if s.Reason != "" {
		out += " (" + s.Reason + ")"
	}
	return out
}

// Is reports whether target is ErrExhausted.
func (e *ExhaustedError) Is(target error) bool {
	return target == ErrExhausted || target == ErrStoredStateUnavailable && e.HeldBy != ""
}

// Unwrap returns the attempts' causes, latest first.
func (e *ExhaustedError) Unwrap() []error {
	errs := make([]error, 0, len(e.Attempts))
	for i := len(e.Attempts) - 1; i >= 0; i-- {
		if err := e.Attempts[i].Err; err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

// ConfigError says which field of the configuration is wrong and what was expected. It never contains a secret.
type ConfigError struct {
	// Field is the environment variable (AZURE_OPENAI_ENDPOINT_2) or Go value (regions[1].Endpoint,
	// WithAttemptTimeout) that is wrong.
	Field string
	// Problem says what is wrong with it and what was expected.
	Problem string
}

func (e *ConfigError) Error() string { return "failover: " + e.Field + ": " + e.Problem }

// Is reports whether target is ErrConfig.
func (e *ConfigError) Is(target error) bool { return target == ErrConfig }

func configErr(field, format string, args ...any) *ConfigError {
	return &ConfigError{Field: field, Problem: fmt.Sprintf(format, args...)}
}

// Outcome is what became of one attempt.
type Outcome uint8

const (
	// OutcomeServed: the backend answered with success and the answer went to the caller.
	OutcomeServed Outcome = iota + 1
	// OutcomeFailedOver: the backend failed in a way another backend might not; the next one was tried.
	OutcomeFailedOver
	// OutcomeReturned: the backend refused the request itself (400 invalid request, content filter, context too
	// long); every backend would refuse it too, so the answer went to the caller as it came.
	OutcomeReturned
	// OutcomeCanceled: the caller's context ended during the attempt, or, with hedging, another attempt of the
	// same request panicked (its Err says so).
	OutcomeCanceled
	// OutcomeLost: another attempt of the same request, sent while this one was unanswered (WithHedging),
	// settled the request first; this one was canceled, or its answer closed unread.
	OutcomeLost
	// OutcomeNotHere: the backend does not hold the stored state the request names (a previous response, a
	// stored item, a file or a batch); the request looked for it in the next backend. Not a failure of the backend.
	OutcomeNotHere
)

func (o Outcome) String() string {
	switch o {
	case OutcomeServed:
		return "served"
	case OutcomeFailedOver:
		return "failed over"
	case OutcomeReturned:
		return "returned"
	case OutcomeCanceled:
		return "canceled"
	case OutcomeLost:
		return "lost"
	case OutcomeNotHere:
		return "not here"
	}
	return fmt.Sprintf("Outcome(%d)", uint8(o))
}

// Attempt describes one try of one request at one backend.
type Attempt struct {
	// Region is the region's name, or OpenAIFallbackName for the public OpenAI API.
	Region string
	// Deployment is the Azure deployment the request was sent to, or the model for the public OpenAI API.
	Deployment string
	// Status is the HTTP status code; 0 when no answer arrived.
	Status int
	// Err is why the attempt did not serve the request: an *openai.APIError or *openai.RequestError decoded from
	// the answer, a transport error, ErrAttemptTimeout, or a *CredentialError when the region's Entra ID
	// credential gave no token (nothing was sent). Nil when the attempt served the request.
	Err error
	// Duration runs from sending the request to deciding the outcome.
	Duration time.Duration
	// Outcome is what became of the attempt.
	Outcome Outcome
	// Rest is how long the backend, or the model on it, now rests because of this attempt: no request for the
	// model goes to it until the rest is over. For a 404 it is how long the model is taken to be missing there.
	// Zero when the attempt set no rest.
	Rest time.Duration
	// Header holds the answer's headers (x-ms-region, x-ratelimit-remaining-*, retry-after, …), also for
	// streaming calls, whose errors go-openai returns without them; nil when no answer arrived. It is the
	// response's own map: read it, do not change it.
	Header http.Header
	// Hedged reports that the attempt was a hedge: sent while an earlier attempt of the same request was still
	// unanswered (WithHedging).
	Hedged bool
}

// String describes the attempt in one line, e.g. "eastus: 429 failed over after 12ms: <cause>".
func (a Attempt) String() string {
	var b strings.Builder
	b.WriteString(a.Region)
	b.WriteString(": ")
	if a.Status != 0 {
		fmt.Fprintf(&b, "%d ", a.Status)
	}
	if a.Hedged {
		b.WriteString("hedge ")
	}
	fmt.Fprintf(&b, "%s after %s", a.Outcome, a.Duration.Round(time.Microsecond))
	if a.Rest > 0 {
		fmt.Fprintf(&b, ", resting %s", a.Rest.Round(time.Millisecond))
	}
	if a.Err != nil {
		b.WriteString(": ")
		b.WriteString(describeCause(a.Err))
	}
	return b.String()
}

// describeCause is the part of an attempt's cause worth a line: go-openai's errors repeat the status, which the
// attempt already shows, and a RequestError carries the whole body.
func describeCause(err error) string {
	var apiErr *openai.APIError
	var reqErr *openai.RequestError
	var credErr *CredentialError
	var urlErr *url.Error
	switch {
	case errors.As(err, &credErr):
		// azidentity's errors run to many lines, with troubleshooting links; errors.As reaches the whole of it.
		return oneLine("no Entra ID token: " + credErr.Err.Error())
	case errors.As(err, &apiErr):
		if isInsufficientQuota(apiErr) {
			return "insufficient_quota: the account is out of credit, and waiting will not help: " + apiErr.Message
		}
		if code, ok := apiErr.Code.(string); ok && code != "" && code != strconv.Itoa(apiErr.HTTPStatusCode) {
			return apiErr.Message + " (" + code + ")"
		}
		return apiErr.Message
	case errors.As(err, &reqErr):
		body := strings.TrimSpace(string(reqErr.Body))
		if len(body) > 200 {
			n := 200
			for n > 0 && !utf8.RuneStart(body[n]) {
				n--
			}
			body = body[:n] + "…"
		}
		if body == "" {
			return "no error body"
		}
		return "body: " + body
	case errors.As(err, &urlErr):
		// The attempt names its region; the URL (host, path, api-version) would only lengthen the line, and it
		// reaches whoever the summary is shown to, such as a gateway's callers. errors.As still finds it.
		return urlErr.Op + ": " + describeCause(urlErr.Err)
	}
	return err.Error()
}

// oneLine folds text onto one line and cuts it at about 300 bytes, for log lines and attempt summaries.
func oneLine(text string) string {
	text = strings.Join(strings.Fields(text), " ")
	if len(text) <= 300 {
		return text
	}
	n := 300
	for n > 0 && !utf8.RuneStart(text[n]) {
		n--
	}
	return text[:n] + "…"
}

// exhausted builds the error for a request no backend served, to be retried at retryAt (zero: not soon), with what each backend it did not try was doing.
func (c *call) exhausted(retryAt time.Time) error {
	model, attempts, passedOver := c.model, c.attempts, c.passedOver
	err := &ExhaustedError{Attempts: attempts, Model: model, RetryAt: retryAt}
	if c.pin != nil {
		err.HeldBy = c.pin.name
	}
	for _, b := range c.e.backends {
		if slices.ContainsFunc(attempts, func(a Attempt) bool { return a.Region == b.name }) {
			continue
		}
		if !b.serves(model) {
			reason := "model not in its declared deployments"
			if !b.declared {
				reason = "model name cannot be an Azure deployment name"
			}
			err.Skipped = append(err.Skipped, Skip{Region: b.name, State: StateMissing, Reason: reason})
			continue
		}
		if i := slices.IndexFunc(passedOver, func(s Skip) bool { return s.Region == b.name }); i >= 0 {
			err.Skipped = append(err.Skipped, passedOver[i])
		}
	}
	return err
}
