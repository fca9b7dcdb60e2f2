package failover

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
)

// Environment variables read by NewFromEnv and NewFromEnvFile. N is a region number: 1, 2, …; regions are tried in
// ascending N and numbers may have gaps. A variable with another suffix (AZURE_OPENAI_API_KEY_SECONDARY) is not
// read.
const (
	EnvEndpoint      = "AZURE_OPENAI_ENDPOINT"    // _N: region N's base URL; unsuffixed: region 1
	EnvAPIKey        = "AZURE_OPENAI_API_KEY"     // _N: region N's key; unsuffixed: region 1
	EnvRegionName    = "AZURE_OPENAI_REGION"      // _N: region N's display name; unsuffixed: region 1
	EnvDeployments   = "AZURE_OPENAI_DEPLOYMENTS" // _N: the models region N has, model=deployment,…; unsuffixed: every region's
	EnvAPIVersion    = "AZURE_OPENAI_API_VERSION" // unsuffixed: every classic region's; _N: region N's
	EnvOpenAIVersion = "OPENAI_API_VERSION"       // read where AZURE_OPENAI_API_VERSION is not set (the npm AzureOpenAI client's)
	EnvKind          = "AZURE_OPENAI_KIND"        // _N: azure (the default) or openai, an OpenAI-compatible API (Region.Kind)
	EnvPriority      = "AZURE_OPENAI_PRIORITY"    // _N: region N's priority, 0 or more, lower first (Region.Priority)
	EnvWeight        = "AZURE_OPENAI_WEIGHT"      // _N: region N's weight for StrategyWeighted (Region.Weight)
	EnvAuth          = "AZURE_OPENAI_AUTH"        // _N: key or entra (Microsoft Entra ID); unsuffixed: every region's without a key
	EnvOpenAIKey     = "OPENAI_API_KEY"           // the public OpenAI fallback's key
	EnvOpenAIBaseURL = "OPENAI_BASE_URL"          // the fallback's base URL (default DefaultOpenAIBaseURL)
)

// EnvFile is the file NewFromEnv reads, from the working directory, when it exists.
const EnvFile = ".env"

// NewFromEnv builds a client from the environment: the variables above, read from the process environment and
// from EnvFile in the working directory when it exists (the process environment wins). The file is read, not
// loaded: the process environment is left unchanged. Options given here override the environment.
func NewFromEnv(opts ...Option) (*Client, error) { return newFromEnv(EnvFile, false, opts) }

// NewFromEnvFile is NewFromEnv with the dotenv file at path instead of EnvFile: for a test's own settings, such as
// fake regions on random ports, or a service whose configuration lives elsewhere. The file must exist. As with
// NewFromEnv, the process environment wins over the file, and options win over both.
func NewFromEnvFile(path string, opts ...Option) (*Client, error) {
	return newFromEnv(path, true, opts)
}

// newFromEnv reads the environment with the dotenv file at path, builds the configuration it describes, and
// builds the client with the caller's options after the environment's.
func newFromEnv(path string, required bool, opts []Option) (*Client, error) {
	env, err := readEnv(path, required)
	if err != nil {
		return nil, err
	}
	c, err := configFromEnv(env)
	if err != nil {
		return nil, err
	}
	c.opts = append(c.opts, opts...)
	return build(c)
}

// configFromEnv turns environment variables into a configuration: the regions, the options, and the variables
// its fields came from. It reports what only the environment can get wrong (a value that does not parse, two
// spellings that disagree); the rest is build's. It is pure: tests and fuzzing give it maps.
func configFromEnv(env map[string]string) (config, error) {
	scan := scanEnv(env)
	errs := scan.errs
	defaults, dErrs := envRegionDefaults(scan.globals)
	errs = append(errs, dErrs...)
	regions, names, rErrs := envRegions(scan.regions, defaults)
	errs = append(errs, rErrs...)
	opts, fallback, oErrs := envOptions(scan.globals)
	errs = append(errs, oErrs...)
	names.fallback = fallback
	if len(regions) == 0 && scan.globals[EnvOpenAIKey] == "" && len(errs) == 0 {
		problem := fmt.Sprintf("no region is configured and %s is not set; set %s_1 and %s_1 or %s_1=entra (and _2, … for more regions), or %s for the public API alone", EnvOpenAIKey, EnvEndpoint, EnvAPIKey, EnvAuth, EnvOpenAIKey)
		if len(scan.ignored) > 0 {
			problem += fmt.Sprintf(" (%s not read: a region's variables end in its number)", strings.Join(scan.ignored, ", "))
		}
		errs = append(errs, configErr(EnvEndpoint+"_1", "%s", problem))
	}
	if len(errs) > 0 {
		return config{}, errors.Join(errs...)
	}
	return config{regions: regions, opts: opts, names: names}, nil
}

// envDefaults are what the unsuffixed variables give every region that does not set its own.
type envDefaults struct {
	apiVersion    string            // AZURE_OPENAI_API_VERSION, else OPENAI_API_VERSION
	apiVersionVar string            // which of the two it is
	deployments   map[string]string // AZURE_OPENAI_DEPLOYMENTS; nil when unset
	entra         bool              // AZURE_OPENAI_AUTH=entra, for the regions without a key
}

// envRegionDefaults reads the unsuffixed per-region variables. They are checked here, not with the regions: every
// region may override them, and a wrong value is still wrong.
func envRegionDefaults(g map[string]string) (envDefaults, []error) {
	var d envDefaults
	var errs []error
	d.apiVersion, d.apiVersionVar = g[EnvAPIVersion], EnvAPIVersion
	if d.apiVersion == "" {
		d.apiVersion, d.apiVersionVar = g[EnvOpenAIVersion], EnvOpenAIVersion
		if d.apiVersion == "preview" || d.apiVersion == "v1" {
			// Another client's setting for Azure's v1 surface, which takes no dated version: nothing for a
			// classic region.
			d.apiVersion = ""
		}
	}
	if d.apiVersion != "" {
		if err := checkAPIVersion(d.apiVersionVar, d.apiVersion); err != nil {
			errs = append(errs, err)
		}
	}
	if raw := g[EnvDeployments]; raw != "" {
		var err error
		if d.deployments, err = parseDeployments(EnvDeployments, raw); err != nil {
			errs = append(errs, err)
		}
	}
	if raw := g[EnvAuth]; raw != "" {
		var err error
		if d.entra, err = parseAuth(EnvAuth, raw); err != nil {
			errs = append(errs, err)
		}
	}
	return d, errs
}

// regionVars names the variable base behind each Region field.
var regionVars = map[string]string{"Name": EnvRegionName, "Endpoint": EnvEndpoint, "APIKey": EnvAPIKey,
	"APIVersion": EnvAPIVersion, "Deployments": EnvDeployments, "Priority": EnvPriority, "Weight": EnvWeight,
	"Credential": EnvAuth, "Kind": EnvKind}

// envRegions parses the regions' values, fills in the defaults, and names each field's variable: the region's
// own, or the unsuffixed one it took its value from.
func envRegions(scanned []envRegion, d envDefaults) ([]regionConfig, *envNames, []error) {
	var errs []error
	regions := make([]regionConfig, 0, len(scanned))
	names := &envNames{regions: make([]map[string]string, 0, len(scanned))}
	for _, sr := range scanned {
		r, vars, rErrs := envRegionConfig(&sr, d)
		errs = append(errs, rErrs...)
		regions = append(regions, r)
		names.regions = append(names.regions, vars)
	}
	return regions, names, errs
}

// envRegionConfig parses one region's values.
func envRegionConfig(sr *envRegion, d envDefaults) (regionConfig, map[string]string, []error) {
	var errs []error
	v := sr.values
	vars := make(map[string]string, len(regionVars))
	for field, base := range regionVars {
		vars[field] = sr.name(base)
	}
	r := regionConfig{Region: Region{Name: v[EnvRegionName], Endpoint: v[EnvEndpoint], APIKey: v[EnvAPIKey], APIVersion: v[EnvAPIVersion]}}
	if raw, ok := v[EnvAuth]; ok {
		entra, err := parseAuth(vars["Credential"], raw)
		if err != nil {
			errs = append(errs, err)
		}
		r.entra = entra
	} else if d.entra && r.APIKey == "" {
		r.entra, vars["Credential"] = true, EnvAuth
	}
	for _, f := range [...]struct {
		field string
		dst   *int
	}{{"Priority", &r.Priority}, {"Weight", &r.Weight}} {
		if raw, ok := v[regionVars[f.field]]; ok {
			n, err := strconv.Atoi(raw)
			if err != nil {
				errs = append(errs, configErr(vars[f.field], "is not a whole number; expected one such as 1"))
			}
			*f.dst = n
		}
	}
	if raw, ok := v[EnvKind]; ok {
		kind, err := parseKind(vars["Kind"], raw)
		if err != nil {
			errs = append(errs, err)
		}
		r.Kind = kind
	}
	// Every classic region's api-version; a v1 or OpenAI-compatible region takes none, so the shared one is not
	// theirs (a region's own is, and is checked).
	if r.APIVersion == "" && d.apiVersion != "" && r.Kind == KindAzure && !isV1Endpoint(r.Endpoint) {
		r.APIVersion, vars["APIVersion"] = d.apiVersion, d.apiVersionVar
	}
	if raw, ok := v[EnvDeployments]; ok {
		m, err := parseDeployments(vars["Deployments"], raw)
		if err != nil {
			errs = append(errs, err)
		}
		r.Deployments = m
	} else if d.deployments != nil && r.Kind == KindAzure {
		// Azure's deployment names, not an OpenAI-compatible API's model names.
		r.Deployments, vars["Deployments"] = d.deployments, EnvDeployments
	}
	return r, vars, errs
}

// envNames names fields by the variables they were read from.
type envNames struct {
	regions  []map[string]string // per region: Region field → variable
	fallback *fallbackSettings   // the OpenAI fallback the environment set, if any
}

func (n *envNames) region(i int, f string) string {
	if i < len(n.regions) && n.regions[i][f] != "" {
		return n.regions[i][f]
	}
	return goNames{}.region(i, f)
}

func (n *envNames) option(s *settings, opt string) string {
	if s.fallback != nil && s.fallback == n.fallback { // else WithOpenAIFallback replaced the environment's
		switch opt {
		case "WithOpenAIFallback(apiKey)":
			return EnvOpenAIKey
		case "WithOpenAIFallback(baseURL)":
			return EnvOpenAIBaseURL
		}
	}
	// The environment's other settings are checked as they are parsed (envOptions): a value left to fail here
	// was given by an option.
	return opt
}

func (n *envNames) entraHint(i int) string {
	return fmt.Sprintf("set %s=entra for Microsoft Entra ID (managed identity)", n.region(i, "Credential"))
}

// parseKind reads a region's kind: azure or openai.
func parseKind(field, raw string) (Kind, error) {
	for i, name := range kindNames {
		if strings.EqualFold(raw, name) {
			return Kind(i), nil
		}
	}
	return 0, configErr(field, "is not a region kind; expected azure (Azure OpenAI, classic or v1) or openai (an OpenAI-compatible API)")
}

// isV1Endpoint reports whether a raw endpoint is one of Azure's v1 surface, as validation will find it.
func isV1Endpoint(raw string) bool {
	u, err := url.Parse(raw)
	return err == nil && strings.HasSuffix(strings.TrimRight(u.Path, "/"), v1Suffix)
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
