package gateway

import (
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
)

// headerPinRegion names the region a files or batches request goes to; the client reads it (see the package
// documentation). It passes through to the client untouched.
//
// TODO(issue 18): use failover.HeaderPinRegion, which has this value, once the root package exports it.
const headerPinRegion = "X-Failover-Pin-Region"

// route is what a request asks for.
type route struct {
	api string // "azure" (classic paths), "azure-v1" or "openai"
	// operation labels the request in metrics and logs: the path's operation, such as "chat/completions", or
	// for a resource, its name and what is done to it ("files.list", "responses.get"). Empty when the path does
	// not allow the request's method; the set of labels is fixed, so it bounds the metrics' cardinality.
	operation string
	path      string   // the logical request's path, which the client routes by
	methods   []string // the methods the path allows, for 405's Allow
	// upload marks a route whose body is a file (an audio transcription or translation, a file upload): it may be
	// up to MaxUploadBytes rather than MaxBodyBytes.
	upload bool
	// typed marks a Responses API route, whose streams are typed events: a cut one ends with a typed error event.
	typed bool
}

// allowed reports whether the path allows the request's method.
func (rt route) allowed() bool { return rt.operation != "" }

// byMethod is what one method does on a path: its operation label.
type byMethod struct{ method, operation string }

// modelOperations are the operations a model serves, under every prefix (the classic one names the deployment):
// each is a POST, failed over by the client. The audio transcriptions and translations are uploads
// (multipart/form-data with the audio file).
var modelOperations = map[string]bool{
	"chat/completions": true, "completions": true, "embeddings": true, "images/generations": true,
	"audio/speech": true, "audio/transcriptions": true, "audio/translations": true,
}

// resources are the paths of stored objects (responses, files, batches) and of the model list, served under
// /v1/, /openai/v1/ and the classic /openai/, by pattern ("{id}" stands for an id, see validID). A bare
// resource name labels its create ("responses", "batches", and "files", an upload); the others name what they
// do to it.
var resources = map[string][]byMethod{
	"responses":                  {{http.MethodPost, "responses"}},
	"responses/{id}":             {{http.MethodGet, "responses.get"}, {http.MethodDelete, "responses.delete"}},
	"responses/{id}/cancel":      {{http.MethodPost, "responses.cancel"}},
	"responses/{id}/input_items": {{http.MethodGet, "responses.input_items"}},
	"files":                      {{http.MethodGet, "files.list"}, {http.MethodPost, "files"}},
	"files/{id}":                 {{http.MethodGet, "files.get"}, {http.MethodDelete, "files.delete"}},
	"files/{id}/content":         {{http.MethodGet, "files.content"}},
	"batches":                    {{http.MethodGet, "batches.list"}, {http.MethodPost, "batches"}},
	"batches/{id}":               {{http.MethodGet, "batches.get"}},
	"batches/{id}/cancel":        {{http.MethodPost, "batches.cancel"}},
	"models":                     {{http.MethodGet, "models"}},
}

// notFoundMessage is the 404's: what the gateway serves, so that a caller with a wrong base URL sees what to fix.
const notFoundMessage = "Resource not found: the gateway serves chat/completions, completions, embeddings, " +
	"images/generations and audio/{speech,transcriptions,translations} under /openai/deployments/{deployment}/, " +
	"/openai/v1/ and /v1/; responses, files, batches and models under /openai/ (with an api-version), /openai/v1/ " +
	"and /v1/; and /healthz, /status and /metrics"

// routeOf finds the proxied route of a request by its method and path (decoded): found is false for a path the
// gateway does not serve (404); a route found that is not allowed() refuses the method (405). Ids and deployment
// names are checked here, so that only paths of the documented shapes reach the client.
func routeOf(method, path string) (rt route, found bool) {
	var rest string
	classic := false
	switch {
	case strings.HasPrefix(path, "/v1/"):
		rt.api, rest = "openai", path[len("/v1/"):]
	case strings.HasPrefix(path, "/openai/v1/"):
		rt.api, rest = "azure-v1", path[len("/openai/v1/"):]
	case strings.HasPrefix(path, "/openai/deployments/"):
		// Only model operations have a deployment in the path. The deployment is what precedes the first '/':
		// /openai/deployments/chat/completions is the legacy completions of a deployment named chat, as the
		// client reads it too.
		deployment, op, ok := strings.Cut(path[len("/openai/deployments/"):], "/")
		if !ok || !validDeployment(deployment) || !modelOperations[op] {
			return route{}, false
		}
		rt.api = "azure"
		return rt.with(method, path, []byMethod{{http.MethodPost, op}}), true
	case strings.HasPrefix(path, "/openai/"):
		// The classic surface's resources, which have no deployment in the path (a create's model is in the
		// body); its model operations are under /openai/deployments/ alone.
		rt.api, rest, classic = "azure", path[len("/openai/"):], true
	default:
		return route{}, false
	}
	if !classic && modelOperations[rest] {
		return rt.with(method, path, []byMethod{{http.MethodPost, rest}}), true
	}
	methods, ok := resources[pattern(rest)]
	if !ok {
		return route{}, false
	}
	return rt.with(method, path, methods), true
}

// with completes rt for method on path, which methods serve.
func (rt route) with(method, path string, methods []byMethod) route {
	rt.path = path
	for _, m := range methods {
		rt.methods = append(rt.methods, m.method)
		if m.method == method {
			rt.operation = m.operation
		}
	}
	rt.typed = strings.HasPrefix(methods[0].operation, "responses")
	rt.upload = rt.operation == "audio/transcriptions" || rt.operation == "audio/translations" || rt.operation == "files"
	return rt
}

// pattern is the resource pattern rest has: "files/file-abc/content" is "files/{id}/content". A collection
// ("files") is itself; a path whose second segment is no valid id has none ("").
func pattern(rest string) string {
	name, tail, ok := strings.Cut(rest, "/")
	if !ok {
		return rest
	}
	id, sub, more := strings.Cut(tail, "/")
	switch {
	case !validID(id):
		return ""
	case more:
		return name + "/{id}/" + sub
	default:
		return name + "/{id}"
	}
}

// maxIDLength bounds an id in a path: OpenAI's and Azure's are far shorter ("resp_" and 48 hex digits, "file-" and
// 32 characters, "batch_" and a UUID).
const maxIDLength = 128

// validID accepts the ids of responses, files and batches: at most 128 letters, digits, '-', '_' and '.',
// starting with a letter or digit, so that nothing odd reaches the client's URL: no '/', no percent sign, and no
// dot segment ("." or ".."), which a normalising proxy in front of a region would resolve.
func validID(id string) bool {
	return len(id) <= maxIDLength && validName(id)
}

// validDeployment accepts the names Azure allows for deployments: at most 64 letters, digits, '-', '_' and '.',
// starting with a letter or digit.
func validDeployment(name string) bool {
	return len(name) <= 64 && validName(name)
}

// validName reports whether name is letters, digits, '-', '_' and '.', starting with a letter or digit.
func validName(name string) bool {
	if name == "" || !isAlphanumeric(name[0]) {
		return false
	}
	for _, c := range []byte(name) {
		if !isAlphanumeric(c) && c != '-' && c != '_' && c != '.' {
			return false
		}
	}
	return true
}

func isAlphanumeric(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

// forwardedQuery is the caller's query as the client gets it: whole (api-version, and a list's limit, after and
// order, a retrieve's include[] and stream), in the caller's own encoding, but for any api-key parameter, which
// would be a credential: the gateway's key must never go upstream, and the regions get their own.
func forwardedQuery(raw string) string {
	if raw == "" {
		return ""
	}
	kept := make([]string, 0, strings.Count(raw, "&")+1)
	for _, pair := range strings.Split(raw, "&") {
		name, _, _ := strings.Cut(pair, "=")
		if unescaped, err := url.QueryUnescape(name); err == nil {
			name = unescaped
		}
		if !strings.EqualFold(strings.TrimSpace(name), "api-key") {
			kept = append(kept, pair)
		}
	}
	return strings.Join(kept, "&")
}

// refusal is why the gateway refused a request itself, before any region was asked: a label of
// aoai_gateway_refused_total.
type refusal int

const (
	refusedNotFound refusal = iota
	refusedMethod
	refusedTooLarge
	refusedUnauthorized
	refusals // how many there are
)

// refusalNames are the refusals' label values, by refusal.
var refusalNames = [refusals]string{"not_found", "method_not_allowed", "too_large", "unauthorized"}

func (r refusal) String() string { return refusalNames[r] }

// maxLoggedLength bounds the method and the path a refusal's log line shows: they are the caller's, of any
// length, and a scanner's must not fill the logs.
const maxLoggedLength = 256

// refused counts a request the gateway refuses with status and logs it at Debug: the method and the path, without
// the query (where a misconfigured caller may put a key), never a header. The answer is the caller's to write,
// after: a caller that has read it whole sees the refusal counted.
func (g *Gateway) refused(r *http.Request, status int, why refusal) {
	g.metrics.refused[why].Add(1)
	if g.cfg.Logger == nil {
		return
	}
	g.cfg.Logger.LogAttrs(r.Context(), slog.LevelDebug, "aoai-gateway refused",
		slog.String("method", clip(r.Method)), slog.String("path", clip(r.URL.Path)),
		slog.Int("status", status), slog.String("reason", why.String()))
}

// clip cuts s to maxLoggedLength bytes.
func clip(s string) string {
	if len(s) > maxLoggedLength {
		return s[:maxLoggedLength] + "…"
	}
	return s
}

// allowMethod reports whether r's method is one of methods, and answers 405 with Allow when it is not.
func (g *Gateway) allowMethod(w http.ResponseWriter, r *http.Request, methods ...string) bool {
	if slices.Contains(methods, r.Method) {
		return true
	}
	g.refused(r, http.StatusMethodNotAllowed, refusedMethod)
	w.Header().Set("Allow", strings.Join(methods, ", "))
	writeError(w, http.StatusMethodNotAllowed, "405", "method "+r.Method+" not allowed; use "+strings.Join(methods, " or "))
	return false
}

// authorize reports whether r carries a gateway key (or the gateway is open), and answers 401 when it does not.
func (g *Gateway) authorize(w http.ResponseWriter, r *http.Request) bool {
	if g.open || g.keys.admits(r) {
		return true
	}
	g.refused(r, http.StatusUnauthorized, refusedUnauthorized)
	w.Header().Set("WWW-Authenticate", `Bearer realm="aoai-gateway"`)
	writeError(w, http.StatusUnauthorized, "401", "Access denied: a valid gateway key is required, in the api-key header or as Authorization: Bearer")
	return false
}
