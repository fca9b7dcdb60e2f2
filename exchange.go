package failover

// How one attempt travels: the logical request readdressed to a backend with its credentials, sent under the
// attempt timeout, and its answer read and classified (classify.go) before the pipeline settles it.

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// try makes one attempt at b under its limits (limits.go).
func (c *request) try(ctx context.Context, b *backend, body requestBody) (*http.Response, Attempt, verdict) {
	e := c.e
	start := time.Now()
	a := Attempt{Region: b.name, Deployment: b.deployment(c.model)}
	actx, clock := c.startClock(ctx, b)
	resp, outcome, v := c.exchange(actx, clock, b, b.url(c.op, a.Deployment, c.version), body)
	stopped := clock.stop()
	a.Duration, a.Outcome, a.Err = time.Since(start), outcome, v.cause
	var stream *streamBody
	if resp != nil {
		a.Status, a.Header = resp.StatusCode, resp.Header
		stream, _ = resp.Body.(*streamBody) // exchange hands a served stream over as a streamBody
	}
	cancel := clock.cancel
	switch {
	case stream != nil && stopped:
		stream.cancel = func() { cancel(nil) }
		stream.watch(e.streamIdle, func() { cancel(ErrStreamStalled) })
		return resp, a, v
	case stream != nil:
		// A limit passed as the stream began (its callback may not have run yet): the body is, or will be, cut.
		resp.Body.Close()
		cancel(nil)
		v = verdict{cause: fmt.Errorf("%w after %s", ErrAttemptTimeout, clock.limit), kind: restFailing}
		a.Outcome, a.Err = OutcomeFailedOver, v.cause
		return nil, a, v
	case outcome != OutcomeFailedOver:
		cancel(nil)
		return resp, a, v
	}
	cancel(nil)
	switch cause := context.Cause(actx); {
	case ctx.Err() != nil:
		a.Err, a.Outcome = ctx.Err(), OutcomeCanceled
	case errors.Is(cause, ErrAttemptTimeout):
		if errors.Is(v.cause, ErrCredential) {
			// The token did not come in time: the region has no token, whatever the model.
			v = verdict{cause: &CredentialError{Region: b.name, Err: cause}, kind: restNoToken}
		} else {
			v = verdict{cause: cause, kind: restFailing}
		}
		a.Err = v.cause
	}
	return nil, a, v
}

// exchange sends one attempt and reads its answer. It returns the response when the answer settles the request
// (served or returned), or the verdict on the failure when the next backend should be tried.
func (c *request) exchange(ctx context.Context, clock *attemptClock, b *backend, u *url.URL, body requestBody) (*http.Response, Outcome, verdict) {
	e, orig := c.e, c.req
	auth := b.authValue
	if b.tokens != nil {
		var err error
		if auth, err = b.tokens.authorization(ctx); err != nil {
			return nil, OutcomeFailedOver, verdict{cause: &CredentialError{Region: b.name, Err: err}, kind: credentialRest(err)}
		}
	}
	req, err := attemptRequest(clock.sending(ctx), orig, b, u, body, auth)
	if err != nil {
		// The caller's body could not be replayed: no backend is at fault, and no other would fare better.
		return nil, OutcomeReturned, verdict{cause: err, final: true}
	}
	resp, err := e.send(req)
	clock.responded()
	if err != nil {
		return nil, OutcomeFailedOver, verdict{cause: err, kind: restUnreachable}
	}
	resp.Request = orig // the attempt's request carries the key
	// A served answer's headers reach the caller, a failed one's its errors and the logs.
	e.scrubHeader(resp.Header)
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		if isEventStream(resp) {
			// Read, still under the attempt timeout, up to the stream's first content: a stream that fails or
			// ends before it is this backend's failure, and the next one can still serve it unseen.
			open := openStream
			if c.op == "/responses" {
				open = openTypedStream
			}
			stream, err := open(resp.Body, e.scrub)
			if err != nil {
				resp.Body.Close()
				return resp, OutcomeFailedOver, verdict{cause: err, kind: restFailing}
			}
			resp.Body = stream
			return resp, OutcomeServed, verdict{}
		}
		// Reading the whole answer here keeps it under the attempt timeout and turns a cut or garbled answer
		// into a failover instead of a decoding error for the caller.
		answer, err := bufferBody(resp, maxBody, true, answerBudget(ctx))
		if errors.Is(err, ErrAnswerBudget) { // the caller's limit, not the region's failure
			e.scrubHeader(resp.Header)
			return nil, OutcomeReturned, verdict{cause: err, final: true}
		}
		if err != nil {
			return resp, OutcomeFailedOver, verdict{cause: err, kind: restFailing}
		}
		if !looksLikeObject(answer.data) && !strings.HasPrefix(c.op, "/audio/") { // audio answers text and sound too
			return resp, OutcomeFailedOver, verdict{kind: restFailing,
				cause: fmt.Errorf("malformed answer: %d bytes that are not a JSON object", len(answer.data))}
		}
		return resp, OutcomeServed, verdict{}
	}
	answer, err := bufferBody(resp, maxErrorBody, false, nil)
	if err != nil {
		return resp, OutcomeFailedOver, verdict{cause: err, kind: restFailing}
	}
	data := answer.data
	if scrubbed, changed := e.scrub(data); changed {
		data = scrubbed
		resp.Body, resp.ContentLength = newBodyReader(data), int64(len(data))
	}
	v := classify(resp, data, time.Now())
	if v.final {
		return resp, OutcomeReturned, v
	}
	return resp, OutcomeFailedOver, v
}

// attemptRequest is orig readdressed to u with b's credentials (auth, in b's auth header), under the attempt's
// context.
func attemptRequest(ctx context.Context, orig *http.Request, b *backend, u *url.URL, body requestBody, auth []string) (*http.Request, error) {
	out := orig.WithContext(ctx)
	out.URL, out.Host, out.RequestURI = u, "", ""
	h := orig.Header.Clone()
	if h == nil {
		h = make(http.Header, 1)
	}
	for k := range h {
		// The caller's credentials never travel, however their header is spelled.
		if strings.EqualFold(k, "Authorization") || strings.EqualFold(k, "Api-Key") || strings.EqualFold(k, HeaderPinRegion) {
			delete(h, k) // the pin is the Client's to read, not the region's
		}
	}
	h[b.authHeader] = auth
	out.Header = h
	var err error
	if out.Body, err = body.get(); err != nil {
		return nil, fmt.Errorf("replaying request body: %w", err)
	}
	out.ContentLength = body.length
	// GetBody lets the transport resend the body on a fresh connection when a reused one turns out dead.
	out.GetBody = body.get
	return out, nil
}
