// Package gateway serves a failover.Client over HTTP in the shapes of the Azure OpenAI and OpenAI APIs, so that
// callers in any language get the same failover by changing only their endpoint. cmd/aoai-gateway runs it.
//
// A Gateway serves these routes, each under three prefixes: the OpenAI API's /v1/, Azure's v1 surface /openai/v1/
// (both with the model in the body), and Azure's classic surface, where a model operation names the deployment in
// its path (/openai/deployments/{deployment}/, which names the model) and the others are under /openai/ (with the
// caller's api-version, which passes through):
//
//	POST        chat/completions, completions, embeddings       failed over, as the client does
//	POST        images/generations, audio/speech
//	POST        audio/transcriptions, audio/translations        uploads: bodies up to Config.MaxUploadBytes
//	POST        responses                                       the Responses API's create (classic: /openai/responses)
//	GET, DELETE responses/{id}                                  sent to the region that made the response
//	POST        responses/{id}/cancel
//	GET         responses/{id}/input_items
//	GET, POST   files                                           a POST is an upload, up to Config.MaxUploadBytes
//	GET, DELETE files/{id}
//	GET         files/{id}/content
//	GET, POST   batches
//	GET         batches/{id}
//	POST        batches/{id}/cancel
//	GET         models                                          answered by the client: the configured models
//	GET  /healthz   alive (no key needed)
//	GET  /status    the client's Health() as JSON
//	GET  /metrics   Prometheus text format
//
// Files and batches are never failed over: the client sends each to one region, the one the caller names in the
// X-Failover-Pin-Region header, else the one that holds the object, else the first. An id in a path is at most
// 128 letters, digits, '-', '_' and '.', starting with a letter or digit; a deployment name, at most 64.
//
// Every other path is 404, and a route asked with another method 405 with Allow: the gateway is not an open
// proxy. Requests the gateway refuses itself (404, 405, 413 and 401) are logged at Debug, without their query or
// any header, and counted in aoai_gateway_refused_total by reason.
//
// A Gateway bounds what it holds, against floods: requests in flight (Config.MaxInFlight) and bytes held for
// request bodies and buffered answers (Config.MaxHeldBytes, derived from GOMEMLIMIT by default). Past either, a
// request is answered at once with 503, Retry-After and the code gateway_overloaded, and counted in
// aoai_gateway_shed_total. Gateway.Listener bounds the connections of a listener (Config.MaxConnections). A body
// that does not arrive within Config.BodyReadTimeout is answered 408, and its connection closed. /metrics also
// serves the Go runtime's metrics and the process's resident memory.
//
// A stream cut upstream after its first content ends with an error event of the gateway's, with code
// stream_cut: chat's error data for chat and completions, and for the Responses API (or any stream of typed
// "event:" lines) its typed error event, "event: error", whose sequence_number continues the stream's.
package gateway
