package failover

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// How a direct request (direct.go) travels: its body, kept for a search or sent once, and one attempt at one
// region under the attempt timeout.

// directBody makes req's body replayable when it is small (a batch's, a cancel's empty one) and hands a large one
// (a file upload, sent once) on as it is. unsent closes a one-shot body that no attempt took.
func directBody(req *http.Request) (body requestBody, unsent func(), err error) {
	if req.Body == nil || req.Body == http.NoBody {
		return bytesBody(nil), func() {}, nil
	}
	if req.ContentLength >= 0 && req.ContentLength <= maxScanned {
		data, err := readAll(nil, req.Body, req.ContentLength, maxScanned, nil)
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
		if _, err = bufferBody(resp, maxBody, false, answerBudget(ctx)); err != nil {
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
	answer, err := bufferBody(resp, maxErrorBody, false, nil)
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
