package failover

import (
	"context"
	"log/slog"
	"math"
	"net/http"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
)

// DefaultAttemptTimeout is the limit for one attempt at one backend when WithAttemptTimeout is not given, while the
// backend has no history for the model (see WithAttemptFloor), and the most any learned limit can be. It covers
// the whole answer of a non-streaming call, which Azure sends only once it is finished, so it must outlast a
// reasoning model's long answer: silent and slow look alike until the model is known.
const DefaultAttemptTimeout = 5 * time.Minute

// DefaultAttemptFloor is the least a learned attempt limit can be (see WithAttemptFloor).
const DefaultAttemptFloor = 10 * time.Second

// learnedLimitFactor and learnedLimitPercentile make a backend's learned attempt limit: so many times its recent
// p99 for the model and kind of call. A healthy region stays well within it; a silent one is left long before the
// cold-start limit.
const (
	learnedLimitFactor     = 4
	learnedLimitPercentile = 0.99
)

// DefaultOpenAIBaseURL is the public OpenAI API, used by the fallback when no base URL is given.
const DefaultOpenAIBaseURL = "https://api.openai.com/v1"

// OpenAIFallbackName is the name the public OpenAI fallback has in attempts, errors and logs.
const OpenAIFallbackName = "openai"

// Option configures a Client.
type Option func(*settings)

type settings struct {
	strategy       Strategy
	maxWait        time.Duration
	attemptBudget  int
	streamIdle     time.Duration
	attemptFloor   time.Duration
	headerTimeout  time.Duration
	backoff        func(failures int) time.Duration
	faultRest      time.Duration
	missingRest    time.Duration
	onAttempt      func(context.Context, Attempt)
	model          string
	temperature    float32
	hasTemperature bool
	attemptTimeout time.Duration
	fallback       *fallbackSettings
	httpClient     *http.Client
	logger         *slog.Logger
	credential     azcore.TokenCredential
	store          Store
	storeTiming    StoreTiming
	storeOpener    StoreOpener
	storeURL       string // EnvRedisURL, set by NewFromEnv
	storePrefix    string // EnvRedisPrefix
	noSteering     bool   // WithQuotaSteering(false)
	hedging        *Hedging
}

type fallbackSettings struct {
	apiKey, baseURL string
}

// WithModel sets the model used when a request names none: ChatCompletion always, CreateChatCompletion when the
// request's Model is empty. Default: none, and such a request fails. The environment's FAILOVER_MODEL sets it too.
func WithModel(model string) Option {
	return func(s *settings) { s.model = model }
}

// WithTemperature sets the sampling temperature of ChatCompletion, 0 to 2. Default: the service's own (1).
// A temperature of 0 is sent as 0, not left out.
func WithTemperature(t float32) Option {
	return func(s *settings) { s.temperature, s.hasTemperature = t, true }
}

// WithAttemptTimeout limits one attempt at one backend: for a non-streaming call its whole answer (connecting,
// waiting and reading it), for a stream the wait for its first content. When it passes, the attempt counts as a
// failure of that backend and the next one is tried. It is the limit while a backend has no latency history for
// the model and kind of call (the cold start), and the most a learned limit can be: once a backend has answered
// 20 such calls, its limit is 4 times its recent p99, at least WithAttemptFloor. Silence before the backend
// responds at all is cut sooner (WithHeaderTimeout), and a stream's gaps once content flows have their own limit
// (WithStreamIdleTimeout). The caller's context still bounds the whole request. Default: DefaultAttemptTimeout.
// The environment's FAILOVER_ATTEMPT_TIMEOUT (a Go duration such as 30s) sets it too.
func WithAttemptTimeout(d time.Duration) Option {
	return func(s *settings) { s.attemptTimeout = d }
}

// WithOpenAIFallback makes the public OpenAI API the last backend, tried when every region has failed. baseURL
// may be empty for DefaultOpenAIBaseURL. Default: no fallback. The environment's OPENAI_API_KEY and
// OPENAI_BASE_URL set it too.
func WithOpenAIFallback(apiKey, baseURL string) Option {
	return func(s *settings) {
		s.fallback = &fallbackSettings{apiKey: apiKey, baseURL: baseURL}
	}
}

// WithHTTPClient sends every attempt through c's transport and timeout, for custom TLS settings, proxies or
// instrumentation. The attempt timeout still applies (through each attempt's context). Redirects are never
// followed, whatever c's CheckRedirect says: they would carry the api-key header to another host. Default: a
// client of its own, based on http.DefaultTransport (so HTTPS_PROXY and friends are honoured) with more idle
// connections per host.
func WithHTTPClient(c *http.Client) Option {
	return func(s *settings) { s.httpClient = c }
}

// WithEntraCredential sets the Microsoft Entra ID credential of the regions NewFromEnv reads with
// AZURE_OPENAI_AUTH_N=entra (or AZURE_OPENAI_AUTH=entra). Default: azidentity.NewDefaultAzureCredential, built
// once when New first needs it, which finds a managed identity, a workload identity, a service principal in the
// AZURE_CLIENT_* variables or an Azure CLI sign-in. Regions built as Go values set Region.Credential instead.
func WithEntraCredential(cred azcore.TokenCredential) Option {
	return func(s *settings) { s.credential = cred }
}

// WithLogger logs every attempt that did not serve its request (Warn) and every one that did (Debug). Log lines
// name the region, status, cause and duration; they never contain a key or a request body. Default: no logging.
func WithLogger(l *slog.Logger) Option {
	return func(s *settings) { s.logger = l }
}

// DefaultMaxWait is how long after its start a request may still wait for a resting backend to come back, when
// WithMaxWait is not given.
const DefaultMaxWait = 10 * time.Second

// DefaultFaultRest is how long a backend rests after 401, 403 or insufficient_quota when WithFaultRest is not
// given.
const DefaultFaultRest = 5 * time.Minute

// DefaultMissingModelRest is how long a model is taken to be missing from a region after a 404 when
// WithMissingModelRest is not given.
const DefaultMissingModelRest = time.Hour

// WithStrategy sets how regions of the same priority share requests. Default: StrategyOrdered. The
// environment's FAILOVER_STRATEGY sets it too.
func WithStrategy(st Strategy) Option {
	return func(s *settings) { s.strategy = st }
}

// WithMaxWait bounds waiting for resting backends. When every candidate rests (or has just failed), a request
// waits for the soonest to come back if that is within d of the request's start and before its context's
// deadline, then tries again; otherwise it returns at once with an *ExhaustedError whose RetryAt says when to
// come back. With steering (WithQuotaSteering), a request for which no region has room in its quota, and no
// OpenAI fallback could serve, waits the same way for the first region to have room, and otherwise goes to the
// regions as they are. 0 never waits. Default: DefaultMaxWait. The environment's FAILOVER_MAX_WAIT sets it too.
func WithMaxWait(d time.Duration) Option {
	return func(s *settings) { s.maxWait = d }
}

// WithAttemptFloor sets the least a learned attempt limit can be (see WithAttemptTimeout): a backend that answers
// a model in a second is still given this long. A floor at or above the attempt timeout turns learning off: every
// attempt then has the attempt timeout. Default: DefaultAttemptFloor.
func WithAttemptFloor(d time.Duration) Option {
	return func(s *settings) { s.attemptFloor = d }
}

// WithHeaderTimeout bounds the silence before a backend responds at all: a dial to it (DNS, TCP and TLS, from
// its start to the connection, as the transport reports them through net/http/httptrace; not a wait for a
// connection of the transport's own pool) and, for a stream, the wait from the request's last byte to the
// response headers, which Azure and OpenAI send as soon as they have the request, before the model has produced
// anything. A backend silent that long is down or unreachable, not slow, whatever the model: the attempt fails
// (its cause matches ErrAttemptTimeout), the backend rests as failing and the next one is tried. A non-streaming
// call's headers come only with its finished answer, and an upload takes what it takes: the attempt limit bounds
// those (WithAttemptTimeout), as it does everything through a transport that reports nothing. A limit at or
// above the attempt limit changes nothing; 0 sets none. Default: DefaultHeaderTimeout. The environment's
// FAILOVER_HEADER_TIMEOUT sets it too.
func WithHeaderTimeout(d time.Duration) Option {
	return func(s *settings) { s.headerTimeout = d }
}

// DefaultHeaderTimeout is the silence limit when WithHeaderTimeout is not given: long enough for a distant
// region's TLS handshake on a busy day, short enough that a dead one costs seconds, not the attempt timeout.
const DefaultHeaderTimeout = 10 * time.Second

// WithStreamIdleTimeout bounds the silence between a stream's events once its first content has reached the
// caller (before it, the attempt timeout bounds the wait): a region that goes quiet mid-answer for longer ends the
// stream with an error matching ErrStreamCut and ErrStreamStalled, and rests as failing, instead of holding the
// caller until its context ends. Only the wait for the region counts, not the caller's time between reads. 0 sets
// no limit. Default: DefaultStreamIdleTimeout. The environment's FAILOVER_STREAM_IDLE_TIMEOUT sets it too.
func WithStreamIdleTimeout(d time.Duration) Option {
	return func(s *settings) { s.streamIdle = d }
}

// DefaultStreamIdleTimeout is the stream idle timeout when WithStreamIdleTimeout is not given: generous against
// a model that pauses mid-answer (a tool call being composed), short against a region that has gone silent.
const DefaultStreamIdleTimeout = 30 * time.Second

// WithAttemptBudget bounds the upstream calls one request makes, across its passes over the backends, the waits
// between them and its hedges: a request that has made n ends with an *ExhaustedError (whose Budget says so),
// answered over HTTP as any other. It keeps one request from multiplying into hundreds of calls when every one of
// many regions is throttled or slow. Default (0): each backend at most twice, and never more than
// MaxDefaultAttemptBudget.
func WithAttemptBudget(n int) Option {
	return func(s *settings) { s.attemptBudget = n }
}

// MaxDefaultAttemptBudget is the most upstream calls one request makes by default (see WithAttemptBudget).
const MaxDefaultAttemptBudget = 20

// WithBackoff sets the rest after a failure that came without a usable Retry-After header, given the number of
// consecutive failures of that backend and model (1 for the first). Default: DefaultBackoff.
func WithBackoff(f func(failures int) time.Duration) Option {
	return func(s *settings) { s.backoff = f }
}

// WithFaultRest sets how long a region rests after 401, 403 or insufficient_quota: a wrong key or role, or an
// account out of credit, which waiting does not fix. The rest covers every model of the region and ends with one
// probe request. Default: DefaultFaultRest.
func WithFaultRest(d time.Duration) Option {
	return func(s *settings) { s.faultRest = d }
}

// WithMissingModelRest sets how long a model is taken to be missing from a region after the region answered 404
// for it; requests for that model skip the region meanwhile, and other models are unaffected. Default:
// DefaultMissingModelRest.
func WithMissingModelRest(d time.Duration) Option {
	return func(s *settings) { s.missingRest = d }
}

// WithOnAttempt calls f after every attempt of every request, with the request's context: the place for metrics.
// It runs on the request's goroutine, outside any lock, and must not block for long. For one request's
// attempts, use WithTrace instead. Default: none.
func WithOnAttempt(f func(ctx context.Context, a Attempt)) Option {
	return func(s *settings) { s.onAttempt = f }
}

// WithQuotaSteering sets whether requests steer away from regions that are about to answer 429. Azure OpenAI
// says in its answers' x-ratelimit-remaining-requests and x-ratelimit-remaining-tokens headers how much of a
// deployment's per-minute quota is left; the client remembers it per region and deployment, lets it recover over
// the minute, takes off what it has sent since, and tries the regions with room for a request (its estimated
// tokens: see the README) before those without, within a priority and then across priorities, before it sends
// anything. Regions without room are still tried, after those with it, and the OpenAI fallback stays last;
// without a fallback, a request for which no region has room first waits, within WithMaxWait, for the first to
// have it.
// Default: on. The environment's FAILOVER_QUOTA_STEERING (true or false) sets it too.
func WithQuotaSteering(on bool) Option {
	return func(s *settings) { s.noSteering = !on }
}

// settingsErrs checks the client-wide settings.
func (c *config) settingsErrs(s *settings) []error {
	name := func(opt string) string { return c.names.option(s, opt) }
	var errs []error
	if len(c.regions) == 0 && s.fallback == nil {
		errs = append(errs, configErr(name("regions"), "none given and no OpenAI fallback; give at least one region or WithOpenAIFallback"))
	}
	if len(s.model) > MaxModelNameBytes {
		errs = append(errs, configErr(name("WithModel"), "is %d bytes long; expected a model or deployment name of at most %d", len(s.model), MaxModelNameBytes))
	}
	if s.attemptTimeout <= 0 {
		errs = append(errs, configErr(name("WithAttemptTimeout"), "is %s; expected a positive duration", s.attemptTimeout))
	}
	if s.maxWait < 0 {
		errs = append(errs, configErr(name("WithMaxWait"), "is %s; expected 0 (never wait) or more", s.maxWait))
	}
	if s.attemptFloor < 0 {
		errs = append(errs, configErr(name("WithAttemptFloor"), "is %s; expected 0 or more", s.attemptFloor))
	}
	if s.headerTimeout < 0 {
		errs = append(errs, configErr(name("WithHeaderTimeout"), "is %s; expected 0 (no limit) or more", s.headerTimeout))
	}
	if s.streamIdle < 0 {
		errs = append(errs, configErr(name("WithStreamIdleTimeout"), "is %s; expected 0 (no limit) or more", s.streamIdle))
	}
	if s.attemptBudget < 0 {
		errs = append(errs, configErr(name("WithAttemptBudget"), "is %d; expected 0 (the default) or more", s.attemptBudget))
	}
	if s.faultRest <= 0 {
		errs = append(errs, configErr(name("WithFaultRest"), "is %s; expected a positive duration", s.faultRest))
	}
	if s.missingRest <= 0 {
		errs = append(errs, configErr(name("WithMissingModelRest"), "is %s; expected a positive duration", s.missingRest))
	}
	if s.backoff == nil {
		errs = append(errs, configErr(name("WithBackoff"), "is nil; expected a function (DefaultBackoff is the default)"))
	}
	if int(s.strategy) >= len(strategyNames) {
		errs = append(errs, configErr(name("WithStrategy"), "is %v; expected one of the Strategy constants", s.strategy))
	}
	if s.hasTemperature && (s.temperature < 0 || s.temperature > 2 || math.IsNaN(float64(s.temperature))) {
		errs = append(errs, configErr(name("WithTemperature"), "is %v; expected a value from 0 to 2", s.temperature))
	}
	errs = append(errs, s.storeErrs()...)
	return append(errs, s.hedgingErrs()...)
}
