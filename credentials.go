package failover

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/joho/godotenv"
)

// Environment variables read by NewFromEnv. N is a region number: 1, 2, …; regions are tried in ascending N and
// numbers may have gaps. A variable with another suffix (AZURE_OPENAI_API_KEY_SECONDARY) is not read.
const (
	EnvEndpoint        = "AZURE_OPENAI_ENDPOINT"     // _N: region N's base URL; unsuffixed: region 1
	EnvAPIKey          = "AZURE_OPENAI_API_KEY"      // _N: region N's key; unsuffixed: region 1
	EnvRegionName      = "AZURE_OPENAI_REGION"       // _N: region N's display name; unsuffixed: region 1
	EnvDeployments     = "AZURE_OPENAI_DEPLOYMENTS"  // _N: the models region N has, model=deployment,…; unsuffixed: every region's
	EnvAPIVersion      = "AZURE_OPENAI_API_VERSION"  // unsuffixed: every region's; _N: region N's
	EnvPriority        = "AZURE_OPENAI_PRIORITY"     // _N: region N's priority, 0 or more, lower first (Region.Priority)
	EnvWeight          = "AZURE_OPENAI_WEIGHT"       // _N: region N's weight for StrategyWeighted (Region.Weight)
	EnvAuth            = "AZURE_OPENAI_AUTH"         // _N: key or entra (Microsoft Entra ID); unsuffixed: every region's without a key
	EnvOpenAIKey       = "OPENAI_API_KEY"            // the public OpenAI fallback's key
	EnvOpenAIBaseURL   = "OPENAI_BASE_URL"           // the fallback's base URL (default DefaultOpenAIBaseURL)
	EnvModel           = "FAILOVER_MODEL"            // the default model (WithModel)
	EnvAttemptTimeout  = "FAILOVER_ATTEMPT_TIMEOUT"  // a Go duration such as 30s (WithAttemptTimeout)
	EnvStrategy        = "FAILOVER_STRATEGY"         // ordered, round-robin, weighted or least-latency (WithStrategy)
	EnvMaxWait         = "FAILOVER_MAX_WAIT"         // a Go duration; 0 never waits (WithMaxWait)
	EnvQuotaSteering   = "FAILOVER_QUOTA_STEERING"   // true or false (WithQuotaSteering; default true)
	EnvHedgeDelay      = "FAILOVER_HEDGE_DELAY"      // a Go duration: hedge requests unanswered that long (Hedging.Delay)
	EnvHedgePercentile = "FAILOVER_HEDGE_PERCENTILE" // a fraction such as 0.95: learn the hedge delay (Hedging.Percentile)
	EnvRedisURL        = "FAILOVER_REDIS_URL"        // the Store to share state through, opened by WithStoreOpener
	EnvRedisPrefix     = "FAILOVER_REDIS_PREFIX"     // the prefix of the Store's keys (default: the Store's own)
)

// EnvFile is the file NewFromEnv reads, from the working directory, when it exists.
const EnvFile = ".env"

// NewFromEnv builds a client from the environment: the variables above, read from the process environment and
// from EnvFile in the working directory when it exists (the process environment wins). The file is read, not
// loaded: the process environment is left unchanged. Options given here override the environment.
func NewFromEnv(opts ...Option) (*Client, error) {
	env, err := readEnv(EnvFile)
	if err != nil {
		return nil, err
	}
	regions, envOpts, err := configFromEnv(env)
	if err != nil {
		return nil, err
	}
	return New(regions, append(envOpts, opts...)...)
}

// readEnv merges the dotenv file at path, if there is one, under the process environment.
func readEnv(path string) (map[string]string, error) {
	env, err := godotenv.Read(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		env = make(map[string]string)
	case err != nil:
		// godotenv's messages quote the file's text, which holds keys: say where to look, not what is there.
		return nil, fmt.Errorf("failover: %s: cannot be parsed as a dotenv file (details withheld: they would quote its secrets); check its quoting and variable names", path)
	}
	for _, kv := range os.Environ() {
		// An empty process variable (docker-compose's ${UNSET}, say) counts as unset: it does not hide the file.
		if k, v, ok := strings.Cut(kv, "="); ok && strings.TrimSpace(v) != "" {
			env[k] = v
		}
	}
	return env, nil
}

// perRegionVars are the variables that take a region number.
var perRegionVars = []string{EnvEndpoint, EnvAPIKey, EnvRegionName, EnvDeployments, EnvAPIVersion, EnvPriority, EnvWeight, EnvAuth}

var describe = map[string]string{EnvEndpoint: "endpoint", EnvAPIKey: "API key", EnvRegionName: "name",
	EnvDeployments: "deployments", EnvAPIVersion: "API version", EnvPriority: "priority", EnvWeight: "weight",
	EnvAuth: "authentication"}

// configFromEnv turns environment variables into regions and options. It is pure: tests and fuzzing give it maps.
func configFromEnv(env map[string]string) ([]Region, []Option, error) {
	var errs []error
	get := func(name string) string { return strings.TrimSpace(env[name]) }

	// values[n][base] is the value of variable base_n; names[n][base] the variable it was read from.
	values := map[int]map[string]string{}
	names := map[int]map[string]string{}
	set := func(n int, base, name, value string) {
		if values[n] == nil {
			values[n], names[n] = map[string]string{}, map[string]string{}
		}
		if prev, ok := values[n][base]; ok {
			if prev != value {
				errs = append(errs, configErr(name, "conflicts with %s: both set region %d's %s, differently; keep one", names[n][base], n, describe[base]))
			}
			return
		}
		values[n][base], names[n][base] = value, name
	}

	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var ignored []string
	for _, k := range keys {
		v := get(k)
		if v == "" {
			continue // an empty variable counts as unset, as in a .env template
		}
		if k == EnvEndpoint || k == EnvAPIKey || k == EnvRegionName {
			set(1, k, k, v) // the unsuffixed spellings name region 1
			continue
		}
		for _, base := range perRegionVars {
			suffix, ok := strings.CutPrefix(k, base+"_")
			if !ok {
				continue
			}
			n, err := strconv.Atoi(suffix)
			switch {
			case err != nil || suffix[0] == '+' || suffix[0] == '-':
				// Not a region number: someone else's variable, such as AZURE_OPENAI_API_KEY_SECONDARY.
				ignored = append(ignored, k)
			case n < 1 || n > 999:
				errs = append(errs, configErr(k, "has region number %d; expected 1 to 999", n))
			default:
				set(n, base, k, v)
			}
			break
		}
	}

	// Unsuffixed, these two apply to every region that does not set its own.
	globalVersion := get(EnvAPIVersion)
	if globalVersion != "" {
		if err := checkAPIVersion(EnvAPIVersion, globalVersion); err != nil {
			errs = append(errs, err)
		}
	}
	var globalDeployments map[string]string
	if raw := get(EnvDeployments); raw != "" {
		var err error
		if globalDeployments, err = parseDeployments(EnvDeployments, raw); err != nil {
			errs = append(errs, err)
		}
	}

	// Unsuffixed, AZURE_OPENAI_AUTH=entra applies to every region that has no key and sets no mode of its own.
	globalEntra := false
	if raw := get(EnvAuth); raw != "" {
		entra, err := parseAuth(EnvAuth, raw)
		if err != nil {
			errs = append(errs, err)
		}
		globalEntra = entra
	}

	numbers := make([]int, 0, len(values))
	for n := range values {
		numbers = append(numbers, n)
	}
	sort.Ints(numbers)
	regions := make([]Region, 0, len(numbers))
	for _, n := range numbers {
		v, nm := values[n], names[n]
		name := func(base string) string {
			if nm[base] != "" {
				return nm[base]
			}
			return fmt.Sprintf("%s_%d", base, n)
		}
		r := Region{
			Name:       v[EnvRegionName],
			Endpoint:   v[EnvEndpoint],
			APIKey:     v[EnvAPIKey],
			APIVersion: v[EnvAPIVersion],
			env: &regionEnv{endpoint: name(EnvEndpoint), apiKey: name(EnvAPIKey), name: name(EnvRegionName),
				apiVersion: name(EnvAPIVersion), deployments: name(EnvDeployments), priority: name(EnvPriority),
				weight: name(EnvWeight), auth: name(EnvAuth)},
		}
		if raw, ok := v[EnvAuth]; ok {
			entra, err := parseAuth(name(EnvAuth), raw)
			if err != nil {
				errs = append(errs, err)
			}
			r.env.entra = entra
		} else if globalEntra && r.APIKey == "" {
			r.env.entra, r.env.auth = true, EnvAuth
		}
		for _, f := range [...]struct {
			base string
			dst  *int
		}{{EnvPriority, &r.Priority}, {EnvWeight, &r.Weight}} {
			if raw, ok := v[f.base]; ok {
				n, err := strconv.Atoi(raw)
				if err != nil {
					errs = append(errs, configErr(name(f.base), "is not a whole number; expected one such as 1"))
				}
				*f.dst = n
			}
		}
		if r.APIVersion == "" && globalVersion != "" {
			r.APIVersion, r.env.apiVersion = globalVersion, EnvAPIVersion
		}
		if raw, ok := v[EnvDeployments]; ok {
			m, err := parseDeployments(name(EnvDeployments), raw)
			if err != nil {
				errs = append(errs, err)
			}
			r.Deployments = m
		} else if globalDeployments != nil {
			r.Deployments, r.env.deployments = globalDeployments, EnvDeployments
		}
		regions = append(regions, r)
	}

	var opts []Option
	if key, base := get(EnvOpenAIKey), get(EnvOpenAIBaseURL); key != "" || base != "" {
		opts = append(opts, func(s *settings) {
			s.fallback = &fallbackSettings{apiKey: key, baseURL: base, keyField: EnvOpenAIKey, urlField: EnvOpenAIBaseURL}
		})
	}
	if model := get(EnvModel); model != "" {
		opts = append(opts, WithModel(model))
	}
	if raw := get(EnvAttemptTimeout); raw != "" {
		d, err := time.ParseDuration(raw)
		if err != nil || d <= 0 {
			errs = append(errs, configErr(EnvAttemptTimeout, "is not a positive Go duration; expected one such as 30s or 1m30s"))
		} else {
			opts = append(opts, func(s *settings) { s.attemptTimeout, s.timeoutField = d, EnvAttemptTimeout })
		}
	}
	if raw := get(EnvStrategy); raw != "" {
		strategy, err := ParseStrategy(raw)
		if err != nil {
			errs = append(errs, configErr(EnvStrategy, "is not a strategy; expected one of %s", strings.Join(strategyNames[:], ", ")))
		} else {
			opts = append(opts, WithStrategy(strategy))
		}
	}
	if raw := get(EnvMaxWait); raw != "" {
		d, err := time.ParseDuration(raw)
		if err != nil || d < 0 {
			errs = append(errs, configErr(EnvMaxWait, "is not a Go duration of 0 or more; expected one such as 10s (0 never waits)"))
		} else {
			opts = append(opts, func(s *settings) { s.maxWait, s.maxWaitField = d, EnvMaxWait })
		}
	}
	if raw := get(EnvQuotaSteering); raw != "" {
		on, err := strconv.ParseBool(raw)
		if err != nil {
			errs = append(errs, configErr(EnvQuotaSteering, "is not a boolean; expected true or false"))
		} else {
			opts = append(opts, WithQuotaSteering(on))
		}
	}
	if h, err := envHedging(get(EnvHedgeDelay), get(EnvHedgePercentile)); err != nil {
		errs = append(errs, err...)
	} else if h != nil {
		opts = append(opts, WithHedging(*h))
	}
	if raw := get(EnvRedisURL); raw != "" {
		prefix := get(EnvRedisPrefix)
		opts = append(opts, func(s *settings) { s.storeURL, s.storePrefix = raw, prefix })
	}
	if len(regions) == 0 && get(EnvOpenAIKey) == "" && len(errs) == 0 {
		problem := fmt.Sprintf("no region is configured and %s is not set; set %s_1 and %s_1 or %s_1=entra (and _2, … for more regions), or %s for the public API alone", EnvOpenAIKey, EnvEndpoint, EnvAPIKey, EnvAuth, EnvOpenAIKey)
		if len(ignored) > 0 {
			problem += fmt.Sprintf(" (%s not read: a region's variables end in its number)", strings.Join(ignored, ", "))
		}
		errs = append(errs, configErr(EnvEndpoint+"_1", "%s", problem))
	}
	if len(errs) > 0 {
		return nil, nil, errors.Join(errs...)
	}
	return regions, opts, nil
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

// parseAuth reads an authentication mode: key, or entra for Microsoft Entra ID. It reports whether it is entra.
func parseAuth(field, raw string) (bool, error) {
	switch strings.ToLower(raw) {
	case "entra":
		return true, nil
	case "key":
		return false, nil
	}
	return false, configErr(field, "is not an authentication mode; expected key or entra (Microsoft Entra ID: managed identity, workload identity or a service principal)")
}

// parseDeployments reads "model=deployment,model=deployment". Errors name entries by position, not by text: a key
// pasted into the wrong variable must not be printed back. (A bare model name is not accepted for the same
// reason: a pasted key would pass for one.)
func parseDeployments(field, raw string) (map[string]string, error) {
	m := make(map[string]string)
	for i, pair := range strings.Split(raw, ",") {
		pair = strings.TrimSpace(pair)
		if pair == "" {
			continue
		}
		model, deployment, ok := strings.Cut(pair, "=")
		model, deployment = strings.TrimSpace(model), strings.TrimSpace(deployment)
		if !ok || model == "" || deployment == "" {
			return nil, configErr(field, "entry %d is not model=deployment; expected pairs separated by commas, such as gpt-4o=gpt-4o,text-embedding-3-small=embed", i+1)
		}
		if _, dup := m[model]; dup {
			return nil, configErr(field, "maps model %q twice", model)
		}
		m[model] = deployment
	}
	return m, nil
}
