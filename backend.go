package failover

import (
	"net/url"
	"strings"
	"time"
)

// backend is one place a request can be sent: an Azure region or the public OpenAI API. Its configuration is
// fixed when the Client is built; what its answers taught is in health (state.go).
type backend struct {
	name        string
	endpoint    string // canonical base URL: two backends with the same one are the same resource
	id          string // the backend's name in a Store (backendID)
	azure       bool
	scheme      string
	host        string
	path        string // base path without a trailing slash; may be empty
	query       string // api-version=…, Azure only
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

// operations are the calls the engine can route: each exists on every Azure deployment.
var operations = []string{"/chat/completions", "/completions", "/embeddings"}

// operationOf is the operation a request's path ends in.
func operationOf(path string) (string, bool) {
	for _, op := range operations {
		if strings.HasSuffix(path, op) {
			return op, true
		}
	}
	return "", false
}

// serves reports whether the backend has model, as far as its configuration says. An Azure region never gets a
// model that cannot be its deployment's name: it is a segment of the request's path.
func (b *backend) serves(model string) bool {
	if !b.declared {
		return !b.azure || strings.IndexByte(model, '/') < 0
	}
	_, ok := b.deployments[model]
	return ok
}

// deployment is where a request for model goes on this backend.
func (b *backend) deployment(model string) string {
	if !b.azure {
		return model
	}
	if d, ok := b.deployments[model]; ok {
		return d
	}
	return model
}

// url is the address of operation op (such as "/chat/completions") for deployment on this backend.
func (b *backend) url(op, deployment string) *url.URL {
	u := &url.URL{Scheme: b.scheme, Host: b.host}
	if !b.azure {
		u.Path = b.path + op
		return u
	}
	u.Path = b.path + "/openai/deployments/" + deployment + op
	if escaped := url.PathEscape(deployment); escaped != deployment {
		u.RawPath = b.path + "/openai/deployments/" + escaped + op
	}
	u.RawQuery = b.query
	return u
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
