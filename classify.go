package failover

import (
	"encoding/json"
	"net/http"

	openai "github.com/sashabaranov/go-openai"
)

// classify decides what an unsuccessful answer means. It returns the answer decoded as go-openai decodes it
// (*openai.APIError, or *openai.RequestError when the body is not in the error shape) and whether the answer is
// final: the request itself is at fault, every backend would refuse it the same way, and it goes back to the
// caller as it came. Otherwise the backend is at fault and the next one is tried.
//
//	status                          verdict    why
//	x-should-retry: true / false    next/final the server's own word overrides the table
//	400, 413, 415, 422              final      invalid request, content filter, context too long, too large
//	401, 403                        next       a key or role that is wrong in this region only
//	404                             next       the deployment (or the endpoint) is missing in this region
//	408, 409, 5xx                   next       timeouts, conflicts and server failures are the backend's
//	429                             next       rate limit, or insufficient_quota: that account is out of credit
//	other 4xx                       final      the request is at fault
//	1xx, 3xx                        next       no answer an OpenAI API gives
func classify(resp *http.Response, body []byte) (cause error, final bool) {
	cause = decodeError(resp, body)
	switch resp.Header.Get("X-Should-Retry") {
	case "true":
		return cause, false
	case "false":
		return cause, true
	}
	switch status := resp.StatusCode; {
	case status == http.StatusUnauthorized, status == http.StatusTooManyRequests, status == http.StatusForbidden, status == http.StatusNotFound,
		status == http.StatusRequestTimeout, status == http.StatusConflict, status >= 500, status < 400:
		return cause, false
	}
	return cause, true
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
