package failover

import (
	"net/url"
	"strings"
	"time"
)

// backend is one place a request can be sent: an Azure region (classic or v1), an OpenAI-compatible region, or
// the OpenAI fallback. Its configuration is fixed when the Client is built; what its answers taught is in health
// (state.go).
type backend struct {
	name        string
	endpoint    string // canonical base URL: two backends with the same one are the same resource
	id          string // the backend's name in a Store (backendID)
	surface     surface
	fallback    bool // the OpenAI fallback: last, for when every region is out
	scheme      string
	host        string
	path        string // base path without a trailing slash; may be empty
	query       string // api-version=…, or empty
	version     string // the classic surface's api-version: the floor of what is sent (see url)
	authHeader  string // canonical header name
	authValue   []string
	secret      string       // what must never leave: the key, scrubbed from upstream error bodies
	tokens      *tokenSource // the Entra ID credential's tokens, for the Authorization header; nil with a key
	deployments map[string]string
	declared    bool // deployments lists every model the backend has: others never go to it
	priority    int
	weight      int
	health      health
}

// surface is the shape of the requests a backend takes.
type surface uint8

const (
	// surfaceClassic is Azure's {endpoint}/openai/deployments/{deployment}/{op}?api-version=….
	surfaceClassic surface = iota
	// surfaceV1 is Azure's {endpoint}/openai/v1/{op}, the deployment in the body's model.
	surfaceV1
	// surfaceOpenAI is an OpenAI-compatible {endpoint}/{op}, the model in the body.
	surfaceOpenAI
)

// classicPrefix starts the deployment's part of a classic Azure path.
const classicPrefix = "/openai/deployments/"

// serves reports whether the backend has model, as far as its configuration says. A classic Azure region never
// gets a model that cannot be its deployment's name: it is a segment of the request's path.
func (b *backend) serves(model string) bool {
	if !b.declared {
		return b.surface != surfaceClassic || strings.IndexByte(model, '/') < 0
	}
	_, ok := b.deployments[model]
	return ok
}

// deployment is what model is called on this backend: its deployment's name, or the provider's name for it.
func (b *backend) deployment(model string) string {
	if d, ok := b.deployments[model]; ok {
		return d
	}
	return model
}

// bodyNamesDeployment reports whether the backend reads the deployment of operation op from the body's model
// rather than from the path: then a body naming another model must be rewritten for it. The classic surface
// takes a response's deployment from the body too.
func (b *backend) bodyNamesDeployment(op string) bool {
	return b.surface != surfaceClassic || op == "/responses"
}

// url is the address of operation op (such as "/chat/completions") for deployment on this backend. version is
// the api-version the caller's request asked for, if any: on the classic surface a newer one than the region's
// is sent instead (the region's is a floor, so that an SDK's newer features work), one rule for every caller.
func (b *backend) url(op, deployment, version string) *url.URL {
	u := &url.URL{Scheme: b.scheme, Host: b.host, RawQuery: b.query}
	if b.surface != surfaceClassic {
		u.Path = b.path + op
		return u
	}
	if op == "/responses" {
		return b.objectURL(op, "", version)
	}
	u.Path = b.path + "/openai/deployments/" + deployment + op
	if escaped := url.PathEscape(deployment); escaped != deployment {
		u.RawPath = b.path + "/openai/deployments/" + escaped + op
	}
	if newerAPIVersion(version, b.version) {
		u.RawQuery = "api-version=" + url.QueryEscape(version)
	}
	return u
}

// objectURL is the address of the object path rest (such as "/responses/resp_1/cancel" or "/files") on this
// backend, with the caller's query (less its api-version), escaped as the caller sent them. version is the
// api-version the caller asked for: on the classic surface, the newer of it and the region's is sent, and for the
// Responses API one new enough for it (see responsesVersion).
func (b *backend) objectURL(rest, query, version string) *url.URL {
	u := &url.URL{Scheme: b.scheme, Host: b.host}
	path := b.path + rest
	if b.surface == surfaceClassic {
		path = b.path + "/openai" + rest
	}
	u.Path, _ = url.PathUnescape(path)
	u.RawPath = path
	var q []string
	for pair := range strings.SplitSeq(query, "&") {
		name, _, _ := strings.Cut(pair, "=")
		if unescaped, err := url.QueryUnescape(name); err == nil {
			name = strings.TrimSpace(unescaped)
		}
		if pair != "" && name != "api-version" && !strings.EqualFold(name, "api-key") { // the caller's key never travels
			q = append(q, pair)
		}
	}
	if b.surface == surfaceClassic {
		v := b.version
		switch {
		case strings.HasPrefix(rest, "/responses"):
			v = responsesVersion(version, b.version)
		case newerAPIVersion(version, b.version):
			v = version
		}
		if v != "" {
			q = append(q, "api-version="+url.QueryEscape(v))
		}
	}
	u.RawQuery = strings.Join(q, "&")
	return u
}

// responsesAPIVersion is the api-version sent for the Responses API on the classic surface when neither the
// caller's nor the region's serves it: the classic surface serves it at 2025-03-01-preview and later previews.
const responsesAPIVersion = "2025-04-01-preview"

// responsesVersion is the api-version for the Responses API on the classic surface: the newer of the caller's
// and the region's that serves it, else responsesAPIVersion.
func responsesVersion(asked, region string) string {
	v := responsesAPIVersion
	for _, c := range [...]string{region, asked} {
		if strings.HasSuffix(c, "-preview") && checkAPIVersion("", c) == nil && c[:10] >= "2025-03-01" && c[:10] > v[:10] {
			v = c
		}
	}
	return v
}

// newerAPIVersion reports whether the api-version a caller asked for is a valid one later than the region's.
// Versions are dates (2024-10-21, 2025-04-01-preview): the later date is the newer; of one date, the region's
// stands.
func newerAPIVersion(asked, region string) bool {
	return asked != "" && region != "" && checkAPIVersion("", asked) == nil && asked[:10] > region[:min(10, len(region))]
}

// passedOver says why a request did not try b for model at now, as it was then: a short rest may have ended
// by the time the request gives up, and the error must still say why the backend was not tried.
func (b *backend) passedOver(model string, now time.Time) Skip {
	s, ok := b.health.skipped(model, now)
	if !ok {
		// The store said another client probes it, or that another's probe was just served while a rest of
		// this client's own still holds.
		s = Skip{State: StateProbing, Reason: "another client sharing the store probes it"}
	}
	s.Region = b.name
	return s
}

// queryValue is the first value of key in a raw query, or "": url.ParseQuery would build a map per request.
func queryValue(raw, key string) string {
	for raw != "" {
		var pair string
		pair, raw, _ = strings.Cut(raw, "&")
		if k, v, _ := strings.Cut(pair, "="); k == key {
			v, err := url.QueryUnescape(v)
			if err != nil {
				return ""
			}
			return v
		}
	}
	return ""
}
