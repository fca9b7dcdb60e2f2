package failover

// The client-wide variables NewFromEnv reads (the regions' are in credentials.go), each the environment's form of
// an option.

import (
	"strconv"
	"strings"
	"time"
)

// Client-wide environment variables read by NewFromEnv and NewFromEnvFile. Options given to them win.
const (
	EnvModel           = "FAILOVER_MODEL"               // the default model (WithModel)
	EnvAttemptTimeout  = "FAILOVER_ATTEMPT_TIMEOUT"     // a Go duration such as 30s (WithAttemptTimeout)
	EnvAttemptFloor    = "FAILOVER_ATTEMPT_FLOOR"       // a Go duration of 0 or more (WithAttemptFloor)
	EnvHeaderTimeout   = "FAILOVER_HEADER_TIMEOUT"      // a Go duration; 0 no limit (WithHeaderTimeout)
	EnvAttemptBudget   = "FAILOVER_ATTEMPT_BUDGET"      // upstream calls per request; 0 the default (WithAttemptBudget)
	EnvStrategy        = "FAILOVER_STRATEGY"            // ordered, round-robin, weighted or least-latency (WithStrategy)
	EnvMaxWait         = "FAILOVER_MAX_WAIT"            // a Go duration; 0 never waits (WithMaxWait)
	EnvStreamIdle      = "FAILOVER_STREAM_IDLE_TIMEOUT" // a Go duration; 0 no limit (WithStreamIdleTimeout)
	EnvQuotaSteering   = "FAILOVER_QUOTA_STEERING"      // true or false (WithQuotaSteering; default true)
	EnvHedgeDelay      = "FAILOVER_HEDGE_DELAY"         // a Go duration: hedge requests unanswered that long (Hedging.Delay)
	EnvHedgePercentile = "FAILOVER_HEDGE_PERCENTILE"    // a fraction such as 0.95: learn the hedge delay (Hedging.Percentile)
	EnvRedisURL        = "FAILOVER_REDIS_URL"           // the Store to share state through, opened by WithStoreOpener
	EnvRedisPrefix     = "FAILOVER_REDIS_PREFIX"        // the prefix of the Store's keys (default: the Store's own)
)

// envOptions reads the client-wide variables into options. It returns the OpenAI fallback it set, if any, so
// that errors about it can name its variables.
func envOptions(g map[string]string) ([]Option, *fallbackSettings, []error) {
	var opts []Option
	var errs []error
	add := func(opt Option, err error) {
		if err != nil {
			errs = append(errs, err)
		} else if opt != nil {
			opts = append(opts, opt)
		}
	}
	var fallback *fallbackSettings
	if key, base := g[EnvOpenAIKey], g[EnvOpenAIBaseURL]; key != "" || base != "" {
		fallback = &fallbackSettings{apiKey: key, baseURL: base}
		opts = append(opts, func(s *settings) { s.fallback = fallback })
	}
	switch model := g[EnvModel]; {
	case len(model) > MaxModelNameBytes:
		errs = append(errs, configErr(EnvModel, "is %d bytes long; expected a model or deployment name of at most %d", len(model), MaxModelNameBytes))
	case model != "":
		opts = append(opts, WithModel(model))
	}
	add(envDuration(g[EnvAttemptTimeout], false, WithAttemptTimeout,
		configErr(EnvAttemptTimeout, "is not a positive Go duration; expected one such as 30s or 1m30s")))
	add(envDuration(g[EnvAttemptFloor], true, WithAttemptFloor,
		configErr(EnvAttemptFloor, "is not a Go duration of 0 or more; expected one such as 10s")))
	add(envDuration(g[EnvHeaderTimeout], true, WithHeaderTimeout,
		configErr(EnvHeaderTimeout, "is not a Go duration of 0 or more; expected one such as 10s (0 sets no limit)")))
	add(envBudget(g[EnvAttemptBudget]))
	add(envStrategy(g[EnvStrategy]))
	add(envDuration(g[EnvMaxWait], true, WithMaxWait,
		configErr(EnvMaxWait, "is not a Go duration of 0 or more; expected one such as 10s (0 never waits)")))
	add(envDuration(g[EnvStreamIdle], true, WithStreamIdleTimeout,
		configErr(EnvStreamIdle, "is not a Go duration of 0 or more; expected one such as 30s (0 sets no limit)")))
	add(envSteering(g[EnvQuotaSteering]))
	if h, hErrs := envHedging(g[EnvHedgeDelay], g[EnvHedgePercentile]); len(hErrs) > 0 {
		errs = append(errs, hErrs...)
	} else if h != nil {
		opts = append(opts, WithHedging(*h))
	}
	if raw := g[EnvRedisURL]; raw != "" {
		prefix := g[EnvRedisPrefix]
		opts = append(opts, func(s *settings) { s.storeURL, s.storePrefix = raw, prefix })
	}
	return opts, fallback, errs
}

// envDuration reads a duration for option with: positive, or 0 too when zeroOK. An empty value gives no option;
// a wrong one gives bad.
func envDuration(raw string, zeroOK bool, with func(time.Duration) Option, bad error) (Option, error) {
	if raw == "" {
		return nil, nil
	}
	d, err := time.ParseDuration(raw)
	if err != nil || d < 0 || (d == 0 && !zeroOK) {
		return nil, bad
	}
	return with(d), nil
}

// envBudget reads FAILOVER_ATTEMPT_BUDGET.
func envBudget(raw string) (Option, error) {
	if raw == "" {
		return nil, nil
	}
	n, err := strconv.Atoi(raw)
	if err != nil || n < 0 {
		return nil, configErr(EnvAttemptBudget, "is not a whole number of 0 or more; expected one such as 6 (0 sets the default)")
	}
	return WithAttemptBudget(n), nil
}

// envStrategy reads FAILOVER_STRATEGY.
func envStrategy(raw string) (Option, error) {
	if raw == "" {
		return nil, nil
	}
	strategy, err := ParseStrategy(raw)
	if err != nil {
		return nil, configErr(EnvStrategy, "is not a strategy; expected one of %s", strings.Join(strategyNames[:], ", "))
	}
	return WithStrategy(strategy), nil
}

// envSteering reads FAILOVER_QUOTA_STEERING.
func envSteering(raw string) (Option, error) {
	if raw == "" {
		return nil, nil
	}
	on, err := strconv.ParseBool(raw)
	if err != nil {
		return nil, configErr(EnvQuotaSteering, "is not a boolean; expected true or false")
	}
	return WithQuotaSteering(on), nil
}

// envHedging reads the hedging variables: nil when both are empty.
func envHedging(delay, percentile string) (*Hedging, []error) {
	if delay == "" && percentile == "" {
		return nil, nil
	}
	var h Hedging
	var errs []error
	if delay != "" {
		d, err := time.ParseDuration(delay)
		if err != nil || d <= 0 {
			errs = append(errs, configErr(EnvHedgeDelay, "is not a positive Go duration; expected one such as 500ms"))
		}
		h.Delay = d
	}
	if percentile != "" {
		p, err := strconv.ParseFloat(percentile, 64)
		if err != nil || !(p > 0 && p < 1) {
			errs = append(errs, configErr(EnvHedgePercentile, "is not a fraction between 0 and 1; expected one such as 0.95"))
		}
		h.Percentile = p
	}
	return &h, errs
}
