package failovertest

import (
	"net/http"
	"strings"
)

// Azure's v1 surface: {endpoint}/openai/v1/{operation}, the deployment named in the body's model, no dated
// api-version. A fake region serves it beside the classic /openai/deployments/{deployment}/{operation} surface, as
// a real resource does; what differs between the two is here, and everything else (scripts, streams, the quota,
// headers, the call log) is shared.

// v1Prefix is the path under which a region serves its v1 surface; Server.V1URL is the region's URL plus it.
const v1Prefix = "/openai/v1"

// v1Operation splits /openai/v1/{operation}. ok is false for a path outside the v1 surface.
func v1Operation(path string) (operation string, ok bool) {
	return strings.CutPrefix(path, v1Prefix+"/")
}

// v1Authorized reports whether a v1 request carries the region's key, in the api-key header or as a Bearer token
// (the stock OpenAI SDKs send a key that way, and the v1 surface takes it), or a valid Entra ID token.
func (s *Server) v1Authorized(r *http.Request) bool {
	return r.Header.Get("Api-Key") == s.Key || r.Header.Get("Authorization") == "Bearer "+s.Key || s.bearerValid(r)
}

// v1APIVersionOK reports whether the v1 surface takes an api-version: none at all, or "v1" or "preview". A dated
// version, which only the classic surface knows, is refused.
func v1APIVersionOK(version string) bool {
	return version == "" || version == "v1" || version == "preview"
}

// v1APIVersionNotSupported is what the v1 surface answers a dated api-version. The status and body are as
// reported against a real resource's /openai/v1/responses with api-version=2025-01-01-preview (openai/codex
// issue 3725); that chat completions and embeddings answer the same is assumed.
func v1APIVersionNotSupported() Reply {
	return Reply{Status: http.StatusBadRequest, Body: azureError("BadRequest", "API version not supported")}
}

// V1DeploymentNotFound answers as Azure's v1 surface does when the body's model matches no deployment of the
// region: not 404 DeploymentNotFound, as the classic surface answers, but 400 with an x-ms-fe-error: true header
// and an OpenAI-shaped invalid_request_error whose message says no deployment matches the model. A fake region
// answers it by itself to a v1 request for a deployment that WithDeployments left out, or with no model at all.
//
// Azure has also been seen answering the same message with 404; a test builds that variant with
//
//	r := V1DeploymentNotFound()
//	r.Status = http.StatusNotFound
//
// The message is as reported by several users of the real service; the rest of the body (type
// invalid_request_error, code and param null) is from one third-party capture of it, not from Microsoft's
// documentation, and another capture records the type as user_error.
func V1DeploymentNotFound() Reply {
	return Reply{
		Status: http.StatusBadRequest,
		Header: http.Header{"X-Ms-Fe-Error": {"true"}},
		Body:   `{"error":{"code":null,"message":"Could not find an existing deployment to match the model in the request. Please verify the model matches an existing deployment in the account.","param":null,"type":"invalid_request_error"}}`,
	}
}
