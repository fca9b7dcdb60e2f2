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
// the backends in order until one does not answer 404.
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
	var attempts []Attempt
	for i, b := range targets {
		last := i == len(targets)-1
		if skip, resting := b.health.skipped("", time.Now()); resting {
			skip.Region = b.name
			if held {
				return nil, &ExhaustedError{HeldBy: b.name, Skipped: []Skip{skip}, RetryAt: skip.Until}
			}
			continue
		}
		start := time.Now()
		resp, err := e.sendTo(ctx, req, b, b.objectURL(r.op, req.URL.RawQuery, version), body)
		a := Attempt{Region: b.name, Duration: time.Since(start), Outcome: OutcomeFailedOver, Err: err}
		if resp != nil {
			a.Status, a.Header, a.Outcome = resp.StatusCode, resp.Header, OutcomeServed
			if resp.StatusCode >= 400 {
				a.Outcome = OutcomeReturned
			}
		}
		if ctx.Err() != nil {
			a.Outcome = OutcomeCanceled
		}
		e.reportAttempt(ctx, trace, a)
		switch {
		case ctx.Err() != nil:
			closeResponse(resp)
			return nil, canceled(ctx, len(attempts)+1)
		case resp == nil:
			attempts = append(attempts, a)
			if held {
				return nil, &ExhaustedError{HeldBy: b.name, Attempts: attempts, RetryAt: time.Now().Add(time.Second)}
			}
			continue
		case resp.StatusCode == http.StatusNotFound && r.id != "" && !held && !last:
			closeResponse(resp) // not here: perhaps in the next region
			attempts = append(attempts, a)
			continue
		case held && (resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500):
			// The one region that can answer cannot now: the caller is told when to come back.
			closeResponse(resp)
			wait, ok := retryAfter(resp.Header, time.Now())
			if !ok {
				wait = time.Second
			}
			a.Err = fmt.Errorf("HTTP %d", resp.StatusCode)
			return nil, &ExhaustedError{HeldBy: b.name, Attempts: append(attempts, a), RetryAt: time.Now().Add(wait)}
		}
		return e.learnFrom(ctx, resp, b, r, req.Method)
	}
	return nil, &ExhaustedError{Attempts: attempts, RetryAt: time.Now().Add(time.Second)}
}

// targets are the backends a direct request goes to, in order; held reports that the request names state that
// only the one backend holds.
func (e *engine) targets(ctx context.Context, req *http.Request, r route, body requestBody) (_ []*backend, held bool, _ error) {
	regions := slices.DeleteFunc(slices.Clone(e.backends), func(b *backend) bool { return b.fallback })
	if e.fallback != nil {
		regions = append(regions, e.fallback) // it holds what was made there like any other
	}
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

// sendTo sends req, readdressed to u, to b with b's credentials and body, and scrubs the answer's secrets.
func (e *engine) sendTo(ctx context.Context, orig *http.Request, b *backend, u *url.URL, body requestBody) (*http.Response, error) {
	auth := b.authValue
	if b.tokens != nil {
		var err error
		if auth, err = b.tokens.authorization(ctx); err != nil {
			return nil, &CredentialError{Region: b.name, Err: err}
		}
	}
	req, err := attemptRequest(ctx, orig, b, u, body, auth)
	if err != nil {
		return nil, err
	}
	if body.data == nil {
		req.GetBody = nil // sent once: the transport must not try to replay it
	}
	resp, err := e.send(req)
	if err != nil {
		return nil, err
	}
	resp.Request = orig // the attempt's request carries the key
	e.scrubHeader(resp.Header)
	if resp.StatusCode >= 400 {
		answer, err := bufferBody(resp, maxErrorBody, false)
		if err != nil {
			return nil, err
		}
		if scrubbed, changed := e.scrub(answer.data); changed {
			resp.Body, resp.ContentLength = newBodyReader(scrubbed), int64(len(scrubbed))
		}
	}
	return resp, nil
}

// learnFrom remembers which backend made the file or batch a successful create answered with, or holds the id a
// request found there, and returns the answer.
func (e *engine) learnFrom(ctx context.Context, resp *http.Response, b *backend, r route, method string) (*http.Response, error) {
	if resp.StatusCode >= 300 {
		return resp, nil
	}
	if r.id != "" {
		e.owners.learn(ctx, b, r.id)
		return resp, nil
	}
	if method != http.MethodPost || r.kind != opPinned {
		return resp, nil
	}
	answer, err := bufferBody(resp, maxBody, false)
	if err != nil {
		return nil, fmt.Errorf("failover: reading %s's answer: %w", b.name, err)
	}
	e.owners.learn(ctx, b, storedIDs(answer.data)...)
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
