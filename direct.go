package failover

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The operations that do not fail over (see operations.go): requests about a stored response, which go where it
// was made; files and batches, which go to one region; and the model list, which the Client answers itself. Each
// is sent once to its backend and its answer comes back as it came: a region whose state is elsewhere cannot
// stand in for another.

// HeaderPinRegion is the request header that names the region (its Region.Name) a file or batch request goes to.
// Without it, a request about a file or batch goes to the region that made it, as far as the Client knows, and
// one that makes a new file or batch (or lists them) to the first region. Such requests are never failed over: a
// file uploaded to one region is not in another, and a batch runs where its input file is.
const HeaderPinRegion = "X-Failover-Pin-Region"

// ErrStoredStateUnavailable is matched by the error of a request about stored state (a stored response, one of
// its items, a file or a batch) whose region cannot take it now: it rests, or cannot be reached. Its error is an
// *ExhaustedError whose HeldBy names the region; a retry after its RetryAt can succeed. Over HTTP it is a 503.
var ErrStoredStateUnavailable = errors.New("failover: the region that holds the state this request names is unavailable")

// direct sends a request that does not fail over (see route) to its backend, or, for an id no one knows, to
// the regions in order until one has it. A region that holds the state and cannot answer now is the typed error
// (ErrStoredStateUnavailable); while seeking, a region that cannot answer now (resting, 429, 5xx, no answer)
// leaves the search open: the caller hears "not found" only when every region said so.
func (e *engine) direct(req *http.Request, r route) (*http.Response, error) {
	ctx := req.Context()
	if r.kind == opLocal {
		closeBody(req)
		return e.models(req), nil
	}
	body, err := directBody(req)
	if err != nil {
		return nil, err
	}
	targets, held, err := e.targets(ctx, req, r, body)
	if err != nil {
		return nil, err
	}
	version := queryValue(req.URL.RawQuery, "api-version")
	trace := ContextTrace(ctx)
	var (
		attempts []Attempt
		skipped  []Skip
		soonest  time.Time
		notFound *http.Response // the last "not found" of a search
		open     bool           // a region that may have the id did not answer
	)
	for _, b := range targets {
		if skip, resting := b.health.skipped("", time.Now()); resting {
			skip.Region, open = b.name, true
			skipped, soonest = append(skipped, skip), earliest(soonest, skip.Until)
			if held {
				break
			}
			continue
		}
		resp, data, a := e.sendOnce(ctx, req, b, b.objectURL(r.op, req.URL.RawQuery, version), body)
		switch {
		case ctx.Err() != nil:
			a.Outcome = OutcomeCanceled
		case resp != nil && resp.StatusCode < 400:
			a.Outcome = OutcomeServed
		case resp != nil && resp.StatusCode == http.StatusNotFound && !held:
			a.Outcome = OutcomeFailedOver // not here: perhaps in the next region
		case resp == nil || resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
			a.Outcome = OutcomeFailedOver
			wait := time.Second
			if resp != nil {
				a.Err = classify(resp, data, time.Now()).cause
				if d, ok := retryAfter(resp.Header, time.Now()); ok {
					wait = d
				}
			}
			soonest, open = earliest(soonest, time.Now().Add(wait)), true
		default:
			a.Outcome = OutcomeReturned // the request's own fault: every region would say the same
		}
		e.reportAttempt(ctx, trace, a)
		switch a.Outcome {
		case OutcomeCanceled:
			closeResponse(resp)
			closeResponse(notFound)
			return nil, canceled(ctx, len(attempts)+1)
		case OutcomeServed, OutcomeReturned:
			closeResponse(notFound)
			return e.settleDirect(ctx, resp, b, r, req.Method)
		}
		attempts = append(attempts, a)
		if resp != nil && resp.StatusCode == http.StatusNotFound {
			closeResponse(notFound)
			notFound = resp
			continue
		}
		closeResponse(resp)
		if held {
			break
		}
	}
	if notFound != nil && !open {
		return notFound, nil // every region that could have it said it has not
	}
	closeResponse(notFound)
	err = &ExhaustedError{Attempts: attempts, Skipped: skipped, RetryAt: soonest}
	if held {
		err.(*ExhaustedError).HeldBy = targets[0].name
	}
	return nil, err
}

// targets are the backends a direct request goes to, in order; held reports that the request names state that
// only the one backend holds.
func (e *engine) targets(ctx context.Context, req *http.Request, r route, body requestBody) (_ []*backend, held bool, _ error) {
	// The OpenAI fallback holds what was made there like any region, and is asked about an id it is known to
	// hold; but it is not asked about ids no one knows: an Azure region's ids are not a third party's business.
	regions := slices.DeleteFunc(slices.Clone(e.backends), func(b *backend) bool { return b.fallback })
	if name := req.Header.Get(HeaderPinRegion); name != "" && r.kind == opPinned {
		i := slices.IndexFunc(regions, func(b *backend) bool { return b.name == name })
		if i < 0 {
			return nil, false, fmt.Errorf("failover: %s names no region of this client: %q", HeaderPinRegion, name)
		}
		return regions[i : i+1], true, nil
	}
	id := r.id
	if id == "" && r.op == "/batches" && body.data != nil {
		var batch struct {
			InputFileID string `json:"input_file_id"`
		}
		_ = json.Unmarshal(body.data, &batch)
		id = batch.InputFileID
	}
	if id != "" {
		if b := e.owners.find(ctx, id); b != nil {
			return []*backend{b}, true, nil
		}
	}
	if r.id == "" {
		return regions[:1], true, nil // a new file or batch, or a list: the first region's
	}
	return regions, false, nil
}

// directBody makes req's body replayable when it is small (a batch's, a cancel's empty one) and hands a large one
// (a file upload, sent once) on as it is.
func directBody(req *http.Request) (requestBody, error) {
	if req.Body == nil || req.Body == http.NoBody {
		return bytesBody(nil), nil
	}
	if req.ContentLength < 0 || req.ContentLength > maxScanned {
		once := req.Body
		get := func() (io.ReadCloser, error) {
			if once == nil {
				return nil, errors.New("body already sent")
			}
			rc := once
			once = nil
			return rc, nil
		}
		return requestBody{get: get, length: req.ContentLength}, nil
	}
	data, err := readAll(nil, req.Body, req.ContentLength, maxScanned)
	req.Body.Close()
	if err != nil {
		return requestBody{}, fmt.Errorf("failover: reading request body: %w", err)
	}
	return bytesBody(data), nil
}

// sendOnce sends req to b once, the wait for the answer's headers bounded by the attempt timeout (not the
// answer's body: an upload's answer or a stream may take longer). It returns the answer, the bytes of an error
// answer, and the attempt as far as the transport tells it.
func (e *engine) sendOnce(ctx context.Context, orig *http.Request, b *backend, u *url.URL, body requestBody) (*http.Response, []byte, Attempt) {
	start := time.Now()
	actx, cancel := context.WithCancelCause(ctx)
	timer := time.AfterFunc(e.attemptTimeout, func() { cancel(ErrAttemptTimeout) })
	resp, data, err := e.sendTo(actx, orig, b, u, body)
	stopped := timer.Stop()
	a := Attempt{Region: b.name, Duration: time.Since(start), Err: err}
	if err != nil || !stopped {
		closeResponse(resp)
		if context.Cause(actx) == ErrAttemptTimeout && ctx.Err() == nil {
			a.Err = fmt.Errorf("%w after %s", ErrAttemptTimeout, e.attemptTimeout)
		}
		cancel(nil)
		return nil, nil, a
	}
	a.Status, a.Header = resp.StatusCode, resp.Header
	resp.Body = &closeCancels{ReadCloser: resp.Body, cancel: func() { cancel(nil) }}
	return resp, data, a
}

// closeCancels is a body whose Close also ends the context its request was sent under.
type closeCancels struct {
	io.ReadCloser
	cancel func()
}

func (c *closeCancels) Close() error {
	err := c.ReadCloser.Close()
	c.cancel()
	return err
}

// sendTo sends req, readdressed to u, to b with b's credentials and body, and scrubs the answer's secrets. An
// error answer is read whole (data, scrubbed) and replayed.
func (e *engine) sendTo(ctx context.Context, orig *http.Request, b *backend, u *url.URL, body requestBody) (*http.Response, []byte, error) {
	auth := b.authValue
	if b.tokens != nil {
		var err error
		if auth, err = b.tokens.authorization(ctx); err != nil {
			return nil, nil, &CredentialError{Region: b.name, Err: err}
		}
	}
	req, err := attemptRequest(ctx, orig, b, u, body, auth)
	if err != nil {
		return nil, nil, err
	}
	if body.data == nil {
		req.GetBody = nil // sent once: the transport must not try to replay it
	}
	resp, err := e.send(req)
	if err != nil {
		return nil, nil, err
	}
	resp.Request = orig // the attempt's request carries the key
	e.scrubHeader(resp.Header)
	if resp.StatusCode < 400 {
		return resp, nil, nil
	}
	answer, err := bufferBody(resp, maxErrorBody, false)
	if err != nil {
		return nil, nil, err
	}
	data := answer.data
	if scrubbed, changed := e.scrub(data); changed {
		data = scrubbed
		resp.Body, resp.ContentLength = newBodyReader(data), int64(len(data))
	}
	return resp, data, nil
}

// settleDirect hands a direct answer over: a stored response's event stream read as a typed stream (so that a
// cut is never a clean end, and an error event is scrubbed), and what the answer says of where objects are
// remembered: the id a search found, a deleted one forgotten, a new file's or batch's id learned.
func (e *engine) settleDirect(ctx context.Context, resp *http.Response, b *backend, r route, method string) (*http.Response, error) {
	if resp.StatusCode >= 300 {
		return resp, nil
	}
	if r.kind == opStored && isEventStream(resp) {
		resp.Body = &streamBody{events: NewEventReader(resp.Body), body: resp.Body, scrub: e.scrub, typed: true}
	}
	switch {
	case r.id != "" && method == http.MethodDelete && strings.Count(r.op, "/") == 2: // DELETE /responses/{id}, /files/{id}
		e.owners.forget(ctx, r.id)
	case r.id != "":
		e.owners.learn(ctx, b, r.id)
	case method == http.MethodPost && r.kind == opPinned:
		answer, err := bufferBody(resp, maxBody, false)
		if err != nil {
			return nil, fmt.Errorf("failover: reading %s's answer: %w", b.name, err)
		}
		e.owners.learn(ctx, b, storedIDs(answer.data)...)
	}
	return resp, nil
}

// models answers a model list from the models the regions are configured with, without asking a region: each
// region's list is its own (deployment names, not models) and a caller of the Client asks for models.
func (e *engine) models(req *http.Request) *http.Response {
	type model struct {
		ID      string `json:"id"`
		Object  string `json:"object"`
		Created int64  `json:"created"`
		OwnedBy string `json:"owned_by"`
	}
	list := struct {
		Object string  `json:"object"`
		Data   []model `json:"data"`
	}{Object: "list", Data: []model{}}
	var names []string
	for _, b := range e.backends {
		for name := range b.deployments {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	for _, name := range slices.Compact(names) {
		list.Data = append(list.Data, model{ID: name, Object: "model", OwnedBy: "failover"})
	}
	data, _ := json.Marshal(list) // strings only: cannot fail
	h := http.Header{"Content-Type": {"application/json"}, "Content-Length": {strconv.Itoa(len(data))}}
	return &http.Response{Status: "200 OK", StatusCode: http.StatusOK, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: h, Body: newBodyReader(data), ContentLength: int64(len(data)), Request: req}
}

func closeResponse(resp *http.Response) {
	if resp != nil {
		resp.Body.Close()
	}
}
