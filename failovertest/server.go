package failovertest

import (
	"maps"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"time"
)

// Server is a fake Azure OpenAI region, or a fake public OpenAI API. It serves chat completions (streaming too),
// completions, embeddings and the Responses API (see responses.go) on the paths, with the auth, headers and bodies, of the real service: a region on
// both of Azure's surfaces, the classic one under URL and the v1 one under V1URL. Replies are scripted per request
// with Script; when the script is used up, every request gets the default reply (a success unless SetDefault says
// otherwise). It is safe for concurrent use.
type Server struct {
	// URL is the base URL to configure: a region's Endpoint, or the OpenAI fallback's base URL (it ends in /v1).
	URL string
	// V1URL is the base URL of a region's v1 surface, URL + "/openai/v1": a stock OpenAI client given it as its
	// base URL, with the region's Key, reaches the region. Empty on a fake OpenAI API.
	V1URL string
	// Name is the region's name, sent back in the x-ms-region header.
	Name string
	// Key is the API key the server accepts: in the api-key header for a region, as a Bearer token for OpenAI.
	Key string

	openai      bool
	deployments map[string]bool // nil: every deployment exists
	onRequest   func(Call)
	noCallLog   bool
	network     *Network
	echo        bool
	identity    *Identity
	quota       *quotaLimiter // nil: no quota
	stored      responseStore // the Responses API's stored responses

	mu       sync.Mutex
	script   []Reply
	fallback Reply
	replier  func(Call) Reply
	calls    []Call
	requests int
	statuses map[int]int // answers sent, by status

	seq       atomic.Int64
	closing   chan struct{}
	closeOnce sync.Once
	shutdown  func()
}

// Call is what a fake server saw of one request.
type Call struct {
	// Operation is "chat/completions", "completions" or "embeddings", or one of the Responses API's:
	// "responses" (POST /responses, a create), "responses.get" (GET /responses/{id}), "responses.delete"
	// (DELETE /responses/{id}), "responses.cancel" (POST /responses/{id}/cancel) or "responses.input_items"
	// (GET /responses/{id}/input_items).
	Operation string
	// ResponseID is the response id named in the path of a Responses API request other than a create.
	ResponseID string
	// Deployment is the deployment named in the path on Azure's classic surface, or in the body's model on its v1
	// surface and in a Responses API create on either (Azure only).
	Deployment string
	// Model is the model named in the body.
	Model string
	// APIVersion is the api-version query parameter as sent (Azure only; empty when there was none, as the v1
	// surface allows).
	APIVersion string
	// V1 reports whether the request came by Azure's v1 surface (under V1URL) rather than its classic one.
	V1 bool
	// Stream reports whether the request asked for a streamed answer.
	Stream bool
	// Authorized reports whether the request carried the server's key, or a valid token of its identity
	// (WithEntraID).
	Authorized bool
	// Status is the status the server answered; 0 until it has answered, and for good when it hung,
	// disconnected, or the client gave up first.
	Status int
	// Time is when the request arrived.
	Time time.Time
	// Body is the request body as it arrived.
	Body []byte
	// Header is the request's header as it arrived, credentials included.
	Header http.Header
}

// Option configures a fake server.
type Option func(*Server)

// WithKey sets the API key the server accepts. Default: "key-<name>" for a region, "sk-test-openai" for OpenAI.
func WithKey(key string) Option { return func(s *Server) { s.Key = key } }

// WithDeployments makes only the named deployments exist: a request for any other is answered 404
// DeploymentNotFound on a region's classic surface, and V1DeploymentNotFound (400) on its v1 surface. On a fake
// OpenAI API the names are models, and others are answered 404 model_not_found. Default: every deployment exists.
func WithDeployments(names ...string) Option {
	return func(s *Server) {
		s.deployments = make(map[string]bool, len(names))
		for _, n := range names {
			s.deployments[n] = true
		}
	}
}

// WithOnRequest calls f with every request as it arrives, before it is answered (so its Status is 0), on the
// server's goroutine. Tests use it to learn that a request has reached a server.
func WithOnRequest(f func(Call)) Option { return func(s *Server) { s.onRequest = f } }

// WithEcho makes the default successful answer repeat the content of the request's last message, so a test can
// tell answers apart. Default: "Hello from <name>."
func WithEcho() Option { return func(s *Server) { s.echo = true } }

// OnNetwork serves on n, an in-memory network, instead of a loopback TCP port.
func OnNetwork(n *Network) Option { return func(s *Server) { s.network = n } }

// NewRegion starts a fake Azure OpenAI region called name, serving both the classic surface (under URL) and the
// v1 surface (under V1URL); a deployment is the same deployment, under one quota, whichever surface reaches it.
// Close it when done.
func NewRegion(name string, opts ...Option) *Server {
	s := &Server{Name: name, Key: "key-" + name}
	return s.start(opts, "")
}

// NewOpenAI starts a fake public OpenAI API. Its URL ends in /v1. Close it when done.
func NewOpenAI(opts ...Option) *Server {
	s := &Server{Name: "openai", Key: "sk-test-openai", openai: true}
	return s.start(opts, "/v1")
}

func (s *Server) start(opts []Option, path string) *Server {
	for _, opt := range opts {
		opt(s)
	}
	s.closing = make(chan struct{})
	s.statuses = make(map[int]int)
	s.stored.init()
	if s.network != nil {
		s.URL, s.shutdown = s.network.serve(s)
	} else {
		srv := httptest.NewServer(s)
		s.URL, s.shutdown = srv.URL, srv.Close
	}
	s.URL += path
	if !s.openai {
		s.V1URL = s.URL + v1Prefix
	}
	return s
}

// Close stops the server. Hanging and delayed replies end at once.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		close(s.closing)
		s.shutdown()
	})
}

// Script queues replies: the next requests get them in order, one each.
func (s *Server) Script(replies ...Reply) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.script = append(s.script, replies...)
}

// SetDefault sets the reply given once the script is used up.
func (s *Server) SetDefault(r Reply) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fallback = r
}

// SetReplier makes f choose the reply to every request once the script is used up, in place of the default:
// for faults chosen at random, or by what the request asks. f is called on the request's goroutine, outside the
// server's lock; nil goes back to the default.
func (s *Server) SetReplier(f func(Call) Reply) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.replier = f
}

// WithoutCallLog makes the server count requests and answers (Requests, Statuses) but keep no Call (Calls returns
// none), so that a long soak does not hold every request it served.
func WithoutCallLog() Option { return func(s *Server) { s.noCallLog = true } }

// Requests is how many requests the server has received.
func (s *Server) Requests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests
}

// Statuses counts the answers the server has sent, by HTTP status: a copy. Requests that hung or were
// disconnected got no answer and are not counted. It counts with WithoutCallLog too.
func (s *Server) Statuses() map[int]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.statuses)
}

// Calls returns what the server saw of each request, in order of arrival.
func (s *Server) Calls() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Call(nil), s.calls...)
}
