package failover

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	openai "github.com/sashabaranov/go-openai"
)

// Client sends OpenAI requests to an ordered list of Azure OpenAI regions, moving on when one is rate-limited or
// failing, and to the public OpenAI API when every region is out. It is safe for concurrent use. Build one with
// New, NewFromEnv or NewFromEnvFile; the zero value is not usable.
//
// A Client formats itself with %v (and every other verb) and logs with log/slog without secrets.
type Client struct {
	engine      *engine
	api         *openai.Client
	model       string
	temperature float32 // sent by ChatCompletion when hasTemperature
	hasTemp     bool
}

// logicalBaseURL is the base URL of the requests go-openai builds for the engine. The engine replaces it per
// backend; only the path's operation and the body matter.
const logicalBaseURL = "https://failover.invalid/v1"

// New builds a client that tries regions in the given order, then the OpenAI fallback if one is configured with
// WithOpenAIFallback. Every problem in regions and options is reported at once, each as a *ConfigError naming the
// field; on error no client is returned.
func New(regions []Region, opts ...Option) (*Client, error) {
	return build(config{regions: goRegions(regions), opts: opts, names: goNames{}})
}

// build makes the client of a configuration from any source: it applies the options, validates everything once,
// opens the Store, and assembles the engine.
func build(c config) (*Client, error) {
	s := newSettings(c.opts)
	backends, errs := c.validate(&s)
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	store, closer, err := s.openStore()
	if err != nil {
		return nil, err
	}
	e := newEngine(&s, backends, len(c.regions))
	if store != nil {
		e.share = newSharing(store, closer, s.storeTiming, s.attemptTimeout, s.logger, e.backends)
	}
	e.owners = newOwners(e.share)
	cfg := openai.DefaultConfig("")
	cfg.BaseURL = logicalBaseURL
	cfg.HTTPClient = e
	return &Client{engine: e, api: openai.NewClientWithConfig(cfg), model: s.model,
		temperature: s.temperature, hasTemp: s.hasTemperature}, nil
}

// newSettings applies opts, in order, to the defaults.
func newSettings(opts []Option) settings {
	s := settings{attemptTimeout: DefaultAttemptTimeout, maxWait: DefaultMaxWait, backoff: DefaultBackoff,
		streamIdle: DefaultStreamIdleTimeout, attemptFloor: DefaultAttemptFloor, headerTimeout: DefaultHeaderTimeout,
		faultRest: DefaultFaultRest, missingRest: DefaultMissingModelRest}
	for _, opt := range opts {
		if opt != nil {
			opt(&s)
		}
	}
	return s
}

// newEngine assembles the engine of validated settings and backends (the regions', then the fallback's, if any).
// Steering needs two regions to choose between.
func newEngine(s *settings, backends []*backend, regions int) *engine {
	transport := defaultTransport()
	httpClient := &http.Client{Transport: transport}
	send := func(req *http.Request) (*http.Response, error) { return roundTrip(transport, req) }
	if s.httpClient != nil {
		c := *s.httpClient
		httpClient, send = &c, c.Do
	}
	// Azure OpenAI never redirects, and net/http would carry the api-key header to wherever a redirect points.
	httpClient.CheckRedirect = refuseRedirect
	e := &engine{client: httpClient, send: send, strategy: s.strategy, attemptTimeout: s.attemptTimeout, maxWait: s.maxWait,
		streamIdle: s.streamIdle, attemptFloor: s.attemptFloor, headerTimeout: s.headerTimeout,
		rests:  restPolicy{backoff: s.backoff, fault: s.faultRest, missing: s.missingRest},
		logger: s.logger, onAttempt: s.onAttempt, hedger: newHedger(s.hedging)}
	e.arrange(backends)
	if e.budget = s.attemptBudget; e.budget == 0 {
		e.budget = min(2*len(e.backends), MaxDefaultAttemptBudget)
	}
	e.steering = !s.noSteering && regions >= 2
	for _, b := range e.backends {
		b.id = backendID(b.name, b.endpoint)
	}
	return e
}

// arrange sorts the backends by priority, keeping the given order within one priority, and groups the regions
// into tiers for the strategies. The fallback, which is last in backends, stays last.
func (e *engine) arrange(backends []*backend) {
	if n := len(backends); n > 0 && backends[n-1].fallback {
		e.fallback = backends[n-1]
	}
	regions := backends
	if e.fallback != nil {
		regions = backends[:len(backends)-1]
	}
	slices.SortStableFunc(regions, func(a, b *backend) int { return cmp.Compare(a.priority, b.priority) })
	for i, b := range regions {
		if i == 0 || b.priority != regions[i-1].priority {
			e.tiers = append(e.tiers, &tier{})
		}
		t := e.tiers[len(e.tiers)-1]
		t.backends = append(t.backends, b)
	}
	e.backends = backends
}

// newFallbackBackend checks the OpenAI fallback's settings and builds its backend. keyField and urlField are what
// errors call its key and base URL.
func newFallbackBackend(f *fallbackSettings, keyField, urlField string) (*backend, error) {
	if f.apiKey == "" {
		return nil, configErr(keyField, "must be set: the OpenAI fallback needs an API key")
	}
	if !validSecret(f.apiKey) {
		return nil, configErr(keyField, "contains spaces, quotes or control characters (a stray newline or quote?)")
	}
	base := f.baseURL
	if base == "" {
		base = DefaultOpenAIBaseURL
	}
	u, err := parseEndpoint(urlField, base)
	if err != nil {
		return nil, err
	}
	return &backend{
		weight:     1,
		surface:    surfaceOpenAI,
		fallback:   true,
		name:       OpenAIFallbackName,
		endpoint:   canonicalEndpoint(u),
		scheme:     u.Scheme,
		host:       u.Host,
		path:       u.Path,
		authHeader: "Authorization",
		authValue:  []string{"Bearer " + f.apiKey},
		secret:     f.apiKey,
	}, nil
}

// roundTrip sends req on t as an http.Client without a timeout, a cookie jar or redirects (refuseRedirect) sends
// it, errors wrapped in *url.Error as the client wraps them, without the client's copy of the request's headers
// for redirects that are never followed: one copy fewer per attempt.
func roundTrip(t http.RoundTripper, req *http.Request) (*http.Response, error) {
	resp, err := t.RoundTrip(req)
	if err != nil {
		op := req.Method[:1] + strings.ToLower(req.Method[1:])
		return nil, &url.Error{Op: op, URL: req.URL.String(), Err: err}
	}
	return resp, nil
}

// refuseRedirect makes a redirect answer an answer like any other; it is classified as a failure of its backend.
func refuseRedirect(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// defaultTransport is http.DefaultTransport with room for the many concurrent requests a service sends to the
// same few hosts (the standard library keeps only 2 idle connections per host), and with smaller buffers per
// HTTP/1 connection: a connection holds them for as long as it is open, a stream's for the stream's whole life,
// while what passes through them is small (a request's head, an answer's headers, events of a few hundred bytes)
// and larger reads and writes go around them (bufio reads into and writes from a large slice directly). A 2 KiB
// reader and a 1 KiB writer, not 4 KiB each: 5 KiB less per concurrent stream, and no measurable cost per call,
// where a 1 KiB reader cost about 4% of a loopback call (BENCHMARKS.md, "Lean streams").
func defaultTransport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = 256
	t.MaxIdleConnsPerHost = 64
	t.ReadBufferSize, t.WriteBufferSize = 2<<10, 1<<10
	return t
}

// ChatCompletion sends messages with the client's model (WithModel, FAILOVER_MODEL) and temperature
// (WithTemperature) and returns the text of the first choice.
func (c *Client) ChatCompletion(ctx context.Context, messages []openai.ChatCompletionMessage) (string, error) {
	resp, err := c.chatCompletion(ctx, messages)
	if err != nil {
		return "", err
	}
	return resp.Choices[0].Message.Content, nil
}

func (c *Client) chatCompletion(ctx context.Context, messages []openai.ChatCompletionMessage) (openai.ChatCompletionResponse, error) {
	req := openai.ChatCompletionRequest{Model: c.model, Messages: messages}
	if c.hasTemp {
		req.Temperature = c.temperature
		if req.Temperature == 0 {
			// go-openai leaves a zero temperature out of the body (the service would use 1); this is its
			// documented way to send 0.
			req.Temperature = math.SmallestNonzeroFloat32
		}
	}
	resp, err := c.CreateChatCompletion(ctx, req)
	if err == nil && len(resp.Choices) == 0 {
		err = errors.New("failover: the answer has no choices")
	}
	return resp, err
}

// CreateChatCompletion sends a chat completion request as go-openai's Client.CreateChatCompletion does, with
// failover. An empty Model is replaced by the client's model. Errors are those of go-openai (an *openai.APIError
// for an answer that refuses the request), an *ExhaustedError when no backend could serve it, or the context's
// error, wrapped, when ctx ends first.
func (c *Client) CreateChatCompletion(ctx context.Context, req openai.ChatCompletionRequest) (openai.ChatCompletionResponse, error) {
	if req.Model == "" {
		if c.model == "" {
			return openai.ChatCompletionResponse{}, errNoModel
		}
		req.Model = c.model
	}
	return c.api.CreateChatCompletion(ctx, req)
}

var errNoModel = errors.New("failover: the request names no model; set its Model, or the client's with WithModel or FAILOVER_MODEL")

// CloseIdleConnections closes the idle connections of the client's HTTP client.
func (c *Client) CloseIdleConnections() {
	c.engine.client.CloseIdleConnections()
}

// Close closes the idle connections of the client's HTTP client and the Store it opened from EnvRedisURL, if
// any; a Store given with WithStore stays open. Requests made after Close still work, on the client's own state:
// it shares nothing more.
func (c *Client) Close() error {
	c.CloseIdleConnections()
	if s := c.engine.share; s != nil {
		return s.close()
	}
	return nil
}

// AttemptTimeout is the limit for one attempt at one backend.
func (c *Client) AttemptTimeout() time.Duration { return c.engine.attemptTimeout }

// Regions returns the names of the backends by priority, in their configured order within one priority (the
// order StrategyOrdered tries them); the OpenAI fallback, if any, is last and named OpenAIFallbackName.
func (c *Client) Regions() []string {
	names := make([]string, len(c.engine.backends))
	for i, b := range c.engine.backends {
		names[i] = b.name
	}
	return names
}

// LogValue logs the client as Format writes it.
func (c *Client) LogValue() slog.Value { return slog.StringValue(fmt.Sprint(c)) }

// Format writes the client's backends and model, never a secret, whatever the verb.
func (c *Client) Format(f fmt.State, verb rune) {
	if c == nil {
		fmt.Fprint(f, "<nil>")
		return
	}
	fmt.Fprintf(f, "failover.Client{regions: [%s], strategy: %s, model: %q, attemptTimeout: %s, maxWait: %s}",
		strings.Join(c.Regions(), " "), c.engine.strategy, c.model, c.engine.attemptTimeout, c.engine.maxWait)
}

// Sharing reports whether the client shares what it learns through a Store, and if so whether the store is
// reachable: false from a failed call until one works again, while the client goes on with its own state.
func (c *Client) Sharing() (shared, reachable bool) {
	s := c.engine.share
	if s == nil {
		return false, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.closed, !s.closed && !s.down
}
