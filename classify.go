package failover

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"

	openai "github.com/sashabaranov/go-openai"
)

// restKind says why a backend rests after a failed attempt, what the rest covers and how it ends.
type restKind uint8

const (
	restNone        restKind = iota
	restThrottled            // 429: the (region, model) rests for Retry-After or the backoff, then serves again
	restFailing              // 408, 409, 5xx, timeouts, garbled answers: rest, then one probe (half-open)
	restUnreachable          // no HTTP answer at all: the whole region rests, then one probe
	restFault                // 401, 403, insufficient_quota: the whole region rests long, then one probe
	restMissing              // 404: this region lacks this model; no rest for other models
	restNoToken              // the region's Entra ID credential gave no token: the whole region rests, then one probe
)

// wholeRegion reports whether a rest of this kind covers every model of the region: its key, its account or its
// network is at fault, not one deployment.
func (k restKind) wholeRegion() bool {
	return k == restUnreachable || k == restFault || k == restNoToken
}

// probes reports whether a rest of this kind ends with one probe request (half-open) instead of full traffic.
func (k restKind) probes() bool { return k != restThrottled && k != restMissing }

// sharedKinds are the rests a Store shares, by their Record.Kind. A wrong key or role (restFault) and a failure
// to get a token (restNoToken) are not among them: other replicas may hold other credentials, as in a rollout of
// a new key.
var sharedKinds = map[restKind]string{restThrottled: RestThrottled, restFailing: RestFailing,
	restUnreachable: RestUnreachable, restMissing: RestMissing}

// shared returns the Record.Kind of a rest of this kind, and whether a Store shares it.
func (k restKind) shared() (string, bool) {
	s, ok := sharedKinds[k]
	return s, ok
}

// restKindOf is the kind of a shared rest whose Record.Kind is s.
func restKindOf(s string) (restKind, bool) {
	for k, name := range sharedKinds {
		if name == s {
			return k, true
		}
	}
	return restNone, false
}

// verdict is what a failed attempt means.
type verdict struct {
	cause error    // what the caller sees: the answer decoded as go-openai decodes it, or a transport error
	final bool     // the request itself is at fault: it goes back to the caller and no backend rests
	kind  restKind // how the backend rests when the verdict is not final
	wait  time.Duration
}

// classify decides what an unsuccessful answer means: whether it is final (the request is at fault and goes back
// to the caller as it came, since every backend would refuse it the same way) or the backend's failure (the next
// backend is tried), and how the backend rests. The cause is the answer decoded as go-openai decodes it: an
// *openai.APIError, or an *openai.RequestError when the body is not in the error shape. The server's own
// Retry-After (see retryAfter) sets the length of a rest for 429, 408, 409 and 5xx.
//
//	answer                          verdict    rest
//	x-should-retry: false           final      none: the server's word overrides the table
//	x-should-retry: true            next       as the status says below; a 4xx rests as a failure
//	400, 413, 415, 422, other 4xx   final      none: invalid request, content filter, context too long
//	401, 403                        next       whole region, WithFaultRest (5 min), then a probe; logged at Error
//	a missing model (see missingModel) next    none; the region lacks this model for WithMissingModelRest (1 h)
//	other 404 (a wrong path)        final      none: nothing is learned of the model
//	429                             next       this model: Retry-After, else the backoff; then full traffic
//	429 insufficient_quota          next       whole backend as for 401: the account is out of credit
//	408, 409, 5xx, 1xx, 3xx         next       this model: Retry-After, else the backoff; then a probe
//	a garbled or cut 2xx answer     next       this model: the backoff, then a probe
//	attempt timeout                 next       this model: the backoff, then a probe
//	no answer (refused, reset, DNS) next       whole region: the backoff, then a probe
//	no Entra ID token, service down next       whole region: the backoff, then a probe (see credentialRest)
//	no Entra ID token, refused      next       whole region as for 401 (see credentialRest)
func classify(resp *http.Response, body []byte, now time.Time) verdict {
	v := verdict{cause: decodeError(resp, body)}
	v.wait, _ = retryAfter(resp.Header, now)
	status := resp.StatusCode
	switch {
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		v.kind = restFault
	case (status == http.StatusNotFound || status == http.StatusBadRequest) && missingModel(v.cause):
		v.kind = restMissing
	case status == http.StatusTooManyRequests && isInsufficientQuota(v.cause):
		v.kind = restFault
	case status == http.StatusTooManyRequests:
		v.kind = restThrottled
	case status == http.StatusRequestTimeout, status == http.StatusConflict, status >= 500, status < 400:
		v.kind = restFailing
	default:
		v.final = true
	}
	switch resp.Header.Get("X-Should-Retry") {
	case "true":
		if v.final {
			v.final, v.kind = false, restFailing
		}
	case "false":
		v.final, v.kind = true, restNone
	}
	if v.kind == restFault || v.kind == restMissing {
		v.wait = 0 // the rest is ours to size: a Retry-After on these is about load, which is not the problem
	}
	return v
}

// missingModel reports whether an answer's error (404, or 400 from Azure's v1 surface) says the backend lacks
// the model: the classic surface's DeploymentNotFound, the v1 surface's "Could not find an existing deployment"
// (which it answers with 400 or 404 and no code of its own), or OpenAI's model_not_found. Any other 404, such as
// "Resource not found" for a wrong path, says nothing of the model.
func missingModel(err error) bool {
	var apiErr *openai.APIError
	if !errors.As(err, &apiErr) {
		return false
	}
	code, _ := apiErr.Code.(string)
	return code == "DeploymentNotFound" || code == "model_not_found" ||
		strings.Contains(apiErr.Message, "Could not find an existing deployment")
}

// isInsufficientQuota reports whether err is OpenAI's "insufficient_quota": the account is out of credit, and
// waiting does not fix it.
func isInsufficientQuota(err error) bool {
	var apiErr *openai.APIError
	if !errors.As(err, &apiErr) {
		return false
	}
	code, _ := apiErr.Code.(string)
	return code == "insufficient_quota" || apiErr.Type == "insufficient_quota"
}

// decodeError builds the error go-openai would return for this answer, so callers see the same types.
func decodeError(resp *http.Response, body []byte) error {
	var res openai.ErrorResponse
	err := json.Unmarshal(body, &res)
	if err != nil || res.Error == nil {
		reqErr := &openai.RequestError{HTTPStatus: resp.Status, HTTPStatusCode: resp.StatusCode, Err: err, Body: body}
		if res.Error != nil {
			reqErr.Err = res.Error
		}
		return reqErr
	}
	res.Error.HTTPStatus = resp.Status
	res.Error.HTTPStatusCode = resp.StatusCode
	return res.Error
}
