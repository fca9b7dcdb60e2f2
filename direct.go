package failover

import (
	"bytes"
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
// (ErrStoredStateUnavailable); while seeking, a region that cannot answer now (resting, refusing the Client's
// credentials, 429, 5xx, no answer) leaves the search open: the caller hears "not found" only when every region
// said so.
func (e *engine) direct(req *http.Request, r route) (*http.Response, error) {
	ctx := req.Context()
	if r.kind == opLocal {
		closeBody(req)
		return e.models(req), nil
	}
	body, unsent, err := directBody(req)
	if err != nil {
		return nil, err
	}
	defer unsent() // a one-shot body no region took is closed, as a RoundTripper must
	targets, held, err := e.targets(ctx, req, r, body)
	if err != nil {
		return nil, err
	}
	d := directCall{e: e, ctx: ctx, trace: ContextTrace(ctx)}
	defer d.flush(OutcomeNotHere)
	for _, b := range targets {
		now := time.Now()
		if skip, resting := b.health.skipped("", now); resting {
			skip.Region, d.open = b.name, true
			d.skipped, d.soonest = append(d.skipped, skip), earliest(d.soonest, skip.Until)
			if held {
				break
			}
			continue
		}
		resp, data, a := e.sendOnce(ctx, req, b, r, body)
		switch {
		case ctx.Err() != nil:
			a.Outcome = OutcomeCanceled
		case resp != nil && resp.StatusCode < 400:
			a.Outcome = OutcomeServed
		case resp != nil && resp.StatusCode == http.StatusNotFound && !held:
			a.Outcome = OutcomeNotHere // perhaps in the next region
		case resp == nil || failedDirect(resp.StatusCode):
			a.Outcome = OutcomeFailedOver
			d.failed(b, resp, data, &a, now)
		default:
			a.Outcome = OutcomeReturned // the request's own fault: every region would say the same
		}
		switch a.Outcome {
		case OutcomeCanceled:
			d.report(a)
			closeResponse(resp)
			return nil, canceled(ctx, d.made)
		case OutcomeServed, OutcomeReturned:
			d.report(a)
			b.health.succeeded("", ticket{}, a.Outcome == OutcomeServed, a.Duration, time.Now())
			if !held && r.id != "" {
				e.owners.learn(ctx, b, r.id) // found: next time it is asked for where it is
			}
			return e.settleDirect(ctx, resp, b, r, req.Method)
		case OutcomeNotHere:
			d.notHere(resp, a)
			continue
		}
		d.report(a)
		d.attempts = append(d.attempts, a)
		closeResponse(resp)
		if held {
			break
		}
	}
	if d.notFound != nil && !d.open {
		d.flush(OutcomeReturned) // every region that could have it said it has not: the last one's word for it
		resp := d.notFound
		d.notFound = nil
		return resp, nil
	}
	err = &ExhaustedError{Attempts: d.attempts, Skipped: d.skipped, RetryAt: d.soonest}
	if held {
		err.(*ExhaustedError).HeldBy = targets[0].name
	}
	return nil, err
}

// failedDirect reports whether a direct request's answer says the region cannot answer now, rather than that the
// request is at fault: another region, or this one later, may.
func failedDirect(status int) bool {
	return status == http.StatusTooManyRequests || status >= 500 || status == http.StatusUnauthorized ||
		status == http.StatusForbidden || status == http.StatusRequestTimeout
}

// directCall is what one direct request has seen so far.
type directCall struct {
	e        *engine
	ctx      context.Context
	trace    *Trace
	attempts []Attempt // the failed ones, for the error
	skipped  []Skip
	soonest  time.Time
	open     bool           // a region that may have the id did not answer
	notFound *http.Response // the last "not found" of a search
	pending  *Attempt       // its attempt, reported once it is known whether it is the answer
	made     int
}

func (d *directCall) report(a Attempt) {
	d.flush(OutcomeNotHere)
	d.made++
	d.e.reportAttempt(d.ctx, d.trace, a)
}

// flush reports the pending "not found" with outcome o.
func (d *directCall) flush(o Outcome) {
	if p := d.pending; p != nil {
		d.pending = nil
		p.Outcome = o
		d.made++
		d.e.reportAttempt(d.ctx, d.trace, *p)
	}
	if o == OutcomeNotHere {
		closeResponse(d.notFound)
		d.notFound = nil
	}
}

// notHere holds a region's "not found" back: the answer, if no region has the id.
func (d *directCall) notHere(resp *http.Response, a Attempt) {
	d.flush(OutcomeNotHere)
	d.notFound, d.pending = resp, &a
}

// failed records that b could not answer at now: the attempt's cause, when to come back (its Retry-After, else a
// second), and a rest of the region when it did not answer at all or in time (the whole region: it is not the
// operation that hangs), or of its direct operations after a 5xx, so that the next request does not wait for it
// again.
func (d *directCall) failed(b *backend, resp *http.Response, data []byte, a *Attempt, now time.Time) {
	wait, v := time.Second, verdict{kind: restUnreachable}
	if resp != nil {
		v = classify(resp, data, time.Now())
		a.Err = v.cause
		if v.wait > 0 {
			wait = v.wait
		}
	}
	if resp == nil || resp.StatusCode >= 500 { // no answer, or none in time, rests the whole region
		r, _ := b.health.failed("", ticket{start: now}, a.Status, v, &d.e.rests, time.Now())
		a.Rest = max(time.Until(r.until), 0)
	}
	d.soonest, d.open = earliest(d.soonest, time.Now().Add(wait)), true
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
		if b := e.owners.find(ctx, id, true); b != nil {
			return []*backend{b}, true, nil
		}
	}
	if r.id == "" {
		return regions[:1], true, nil // a new file or batch, or a list: the first region's
	}
	return regions, false, nil
}

// directBody makes req's body replayable when it is small (a batch's, a cancel's empty one) and hands a large one
// (a file upload, sent once) on as it is. unsent closes a one-shot body that no attempt took.
func directBody(req *http.Request) (body requestBody, unsent func(), err error) {
	if req.Body == nil || req.Body == http.NoBody {
		return bytesBody(nil), func() {}, nil
	}
	if req.ContentLength >= 0 && req.ContentLength <= maxScanned {
		data, err := readAll(nil, req.Body, req.ContentLength, maxScanned)
		req.Body.Close()
		if err != nil {
			return requestBody{}, nil, fmt.Errorf("failover: reading request body: %w", err)
		}
		return bytesBody(data), func() {}, nil
	}
	var rc io.ReadCloser = req.Body
	if req.ContentLength < 0 { // of unknown length: kept when it turns out small
		head, err := io.ReadAll(io.LimitReader(req.Body, maxScanned+1))
		if err != nil {
			req.Body.Close()
			return requestBody{}, nil, fmt.Errorf("failover: reading request body: %w", err)
		}
		if len(head) <= maxScanned {
			req.Body.Close()
			return bytesBody(head), func() {}, nil
		}
		rc = struct {
			io.Reader
			io.Closer
		}{io.MultiReader(bytes.NewReader(head), req.Body), req.Body}
	}
	once := rc
	get := func() (io.ReadCloser, error) {
		if once == nil {
			return nil, errors.New("body already sent")
		}
		taken := once
		once = nil
		return taken, nil
	}
	unsent = func() {
		if once != nil {
			once.Close()
		}
	}
	return requestBody{get: get, length: req.ContentLength}, unsent, nil
}

// sendOnce sends req to b once under the attempt timeout, as the failover operations' attempts are: from the
// connection to the answer's headers, and for a JSON answer its body too, but not while an upload is being sent
// (a large file takes what it takes), nor a download's or a stream's body, which the caller reads at its pace.
// It returns the answer, the bytes of an error answer, and the attempt as the transport tells it.
func (e *engine) sendOnce(ctx context.Context, orig *http.Request, b *backend, r route, body requestBody) (*http.Response, []byte, Attempt) {
	start := time.Now()
	actx, cancel := context.WithCancelCause(ctx)
	timer := time.AfterFunc(e.attemptTimeout, func() { cancel(ErrAttemptTimeout) })
	if body.data == nil && body.get != nil {
		// An upload: the clock stops while the transport reads the body, and starts again once it is sent.
		get := body.get
		body.get = func() (io.ReadCloser, error) {
			rc, err := get()
			if err != nil {
				return nil, err
			}
			return &uploadBody{ReadCloser: rc, timer: timer, limit: e.attemptTimeout}, nil
		}
	}
	u := b.objectURL(r.op, orig.URL.RawQuery, queryValue(orig.URL.RawQuery, "api-version"))
	resp, data, err := e.sendTo(actx, orig, b, u, body)
	buffered := resp != nil && resp.StatusCode >= 400 // sendTo read it
	if err == nil && resp.StatusCode < 300 && !isEventStream(resp) && !strings.HasSuffix(r.op, "/content") {
		if _, err = bufferBody(resp, maxBody, false); err != nil {
			resp = nil
		}
		buffered = true
	}
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
	if buffered {
		cancel(nil)
	} else {
		resp.Body = &closeCancels{ReadCloser: resp.Body, cancel: func() { cancel(nil) }}
	}
	return resp, data, a
}

// uploadBody is a one-shot request body that stops the attempt's clock while it is read, and starts it again
// when it is read to its end: an upload takes what it takes, but the answer to it must come in time.
type uploadBody struct {
	io.ReadCloser
	timer   *time.Timer
	limit   time.Duration
	started bool
	ended   bool
}

func (u *uploadBody) Read(p []byte) (int, error) {
	if !u.started {
		u.started = true
		u.timer.Stop()
	}
	n, err := u.ReadCloser.Read(p)
	if err != nil && !u.ended {
		u.ended = true
		u.timer.Reset(u.limit)
	}
	return n, err
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
// remembered: a deleted one forgotten, a new file's or batch's id learned.
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
	case r.id == "" && method == http.MethodPost && r.kind == opPinned:
		if answer, ok := bodyOf(resp).(*bodyReader); ok { // read in sendOnce
			e.owners.learn(ctx, b, storedIDs(answer.data)...)
		}
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
