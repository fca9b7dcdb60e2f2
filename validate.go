package failover

import (
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"sort"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
)

// config is one configuration on its way to a Client, whatever its source: the regions, the options (the
// source's own first, then the caller's, which override them) and how errors name the fields. New and
// NewFromEnv each build one, and both go through the same validate, so a rule and its message live in one place.
type config struct {
	regions []regionConfig
	opts    []Option
	names   fieldNamer
}

// regionConfig is a Region with what a source can ask for that a Region value cannot hold.
type regionConfig struct {
	Region
	// entra: authenticate with the client's Microsoft Entra ID credential (WithEntraCredential, or else
	// DefaultAzureCredential), as AZURE_OPENAI_AUTH=entra asks. A Region value names its own Credential instead.
	entra bool
}

// goRegions is New's regions as a configuration's.
func goRegions(regions []Region) []regionConfig {
	rcs := make([]regionConfig, len(regions))
	for i, r := range regions {
		rcs[i] = regionConfig{Region: r}
	}
	return rcs
}

// fieldNamer names a configuration's fields in errors, in the words of the source that set them: the Go path
// (regions[1].Endpoint, WithAttemptTimeout) for New's arguments, the variable (AZURE_OPENAI_ENDPOINT_2) for the
// environment. The validator knows what is wrong; the namer knows where the user wrote it, so each source of
// configuration brings its own namer and none of them repeats a rule.
type fieldNamer interface {
	// region names field f of the i-th region, f being a Region field's name such as Endpoint or Credential.
	region(i int, f string) string
	// option names the client-wide setting that the Go option opt sets, such as WithAttemptTimeout or
	// WithOpenAIFallback(apiKey). s holds the settings after every option: a caller's option overrides the
	// source's value, and then the caller's name is the right one.
	option(s *settings, opt string) string
	// entraHint says how to give the i-th region a Microsoft Entra ID credential.
	entraHint(i int) string
}

// goNames names fields as New's caller wrote them.
type goNames struct{}

func (goNames) region(i int, f string) string         { return fmt.Sprintf("regions[%d].%s", i, f) }
func (goNames) option(_ *settings, opt string) string { return opt }
func (goNames) entraHint(int) string                  { return "set Credential for Microsoft Entra ID" }

// validate checks the whole configuration and builds its backends: the regions' in the given order, then the
// OpenAI fallback's. Every problem is reported at once, joined; on error no backend is returned.
func (c *config) validate(s *settings) ([]*backend, []error) {
	var errs []error
	entra, err := entraCredential(c.regions, s, c.names)
	if err != nil {
		errs = append(errs, err)
	}
	backends, rErrs := c.regionBackends(s, entra)
	errs = append(errs, rErrs...)
	if s.fallback != nil {
		b, err := newFallbackBackend(s.fallback, c.names.option(s, "WithOpenAIFallback(apiKey)"),
			c.names.option(s, "WithOpenAIFallback(baseURL)"))
		if err != nil {
			errs = append(errs, err)
		} else {
			backends = append(backends, b)
		}
	}
	errs = append(errs, c.settingsErrs(s)...)
	if len(errs) > 0 {
		return nil, errs
	}
	return backends, nil
}

// regionBackends checks every region, and that no two are the same resource or have the same name.
func (c *config) regionBackends(s *settings, entra azcore.TokenCredential) ([]*backend, []error) {
	var errs []error
	rb := regionBuilder{tokens: tokenSources{}, entra: entra, logger: s.logger, names: c.names}
	backends := make([]*backend, 0, len(c.regions)+1)
	seen := seenRegions{endpoints: make(map[string]string, len(c.regions)), names: make(map[string]string, len(c.regions)+1)}
	if s.fallback != nil {
		seen.names[OpenAIFallbackName] = "the OpenAI fallback"
	}
	for i := range c.regions {
		r := &c.regions[i]
		b, bErrs := rb.backend(i, r)
		if len(bErrs) > 0 {
			errs = append(errs, bErrs...)
			continue
		}
		if err := seen.add(i, r, b, c.names); err != nil {
			errs = append(errs, err)
			continue
		}
		backends = append(backends, b)
	}
	return backends, errs
}

// seenRegions remembers the endpoints and names of the regions checked so far, each with the field that set it.
type seenRegions struct{ endpoints, names map[string]string }

// add takes region i's backend b, unless an earlier region has its endpoint or its name.
func (seen seenRegions) add(i int, r *regionConfig, b *backend, names fieldNamer) error {
	account := accountOf(b)
	if first, dup := seen.endpoints[account]; dup {
		return configErr(names.region(i, "Endpoint"), "is the same endpoint as %s; each region must be listed once", first)
	}
	if first, dup := seen.names[b.name]; dup {
		problem := "is %q, the name of %s too; region names must be unique"
		if r.Name == "" {
			problem = "is not set, and the default (the endpoint's host and path) %q is the name of %s too; set a unique name"
		}
		return configErr(names.region(i, "Name"), problem, b.name, first)
	}
	seen.endpoints[account] = names.region(i, "Endpoint")
	seen.names[b.name] = names.region(i, "Name")
	return nil
}

// accountOf is what makes two regions one account, and so pointless to fail over between: an Azure resource,
// whichever surface its endpoint names (its quota is the same); for an OpenAI-compatible API, whose base URL many
// accounts share, the base URL and the key. It never leaves the validator.
func accountOf(b *backend) string {
	switch b.surface {
	case surfaceV1:
		return strings.TrimSuffix(b.endpoint, v1Suffix)
	case surfaceOpenAI:
		return b.endpoint + " " + b.secret
	}
	return b.endpoint
}

// entraCredential is the credential of the regions that take the client's (AZURE_OPENAI_AUTH=entra): the given
// one, or DefaultAzureCredential, built once and shared. It is nil when no region needs it.
func entraCredential(regions []regionConfig, s *settings, names fieldNamer) (azcore.TokenCredential, error) {
	i := slices.IndexFunc(regions, func(r regionConfig) bool { return r.entra && r.Credential == nil })
	if i < 0 {
		return nil, nil
	}
	if given := s.credential; isNilCredential(given) {
		return nil, configErr(names.option(s, "WithEntraCredential"), "is a nil %T; was there an error building it?", given)
	} else if given != nil {
		return given, nil
	}
	cred, err := azidentity.NewDefaultAzureCredential(nil)
	if err != nil {
		// azidentity's message names the variables it read and what was wrong; the only value it quotes is
		// AZURE_TOKEN_CREDENTIALS's, which names a credential type and is no secret.
		return nil, configErr(names.region(i, "Credential"), "is entra, but no Entra ID credential can be built here: %v", err)
	}
	return cred, nil
}

// regionBuilder checks regions and builds their backends. tokens holds the token sources of the credentials seen
// so far, so that regions given one credential share its token; entra is the client's credential.
type regionBuilder struct {
	tokens tokenSources
	entra  azcore.TokenCredential
	logger *slog.Logger
	names  fieldNamer
}

// backend checks region i and builds the backend that serves it.
func (rb *regionBuilder) backend(i int, r *regionConfig) (*backend, []error) {
	cred := r.Credential
	if cred == nil && r.entra {
		cred = rb.entra
	}
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	u, err := rb.endpoint(i, r, cred)
	add(err)
	sf, err := rb.surface(i, r, u)
	add(err)
	add(rb.authErr(i, r, cred))
	version, err := rb.apiVersion(i, r, sf)
	add(err)
	errs = append(errs, rb.deploymentErrs(i, r)...)
	weight, rankErrs := rb.rank(i, r)
	errs = append(errs, rankErrs...)
	name := r.Name
	if name == "" && u != nil {
		name = u.Host + u.Path
	}
	if strings.ContainsFunc(name, func(c rune) bool { return c < ' ' || c == 0x7f }) {
		add(configErr(rb.names.region(i, "Name"), "contains control characters"))
	}
	if len(errs) > 0 {
		return nil, errs
	}
	b := newRegionBackend(r, u, name, sf, version, weight)
	if cred != nil {
		b.authHeader, b.authValue, b.tokens = "Authorization", nil, rb.tokens.get(cred, rb.logger)
	}
	return b, nil
}

// endpoint checks the region's endpoint. When it is missing, the error says what the region has instead: that is
// usually the mistake (a region number wrong on one variable).
func (rb *regionBuilder) endpoint(i int, r *regionConfig, cred azcore.TokenCredential) (*url.URL, error) {
	field := rb.names.region(i, "Endpoint")
	u, err := parseEndpoint(field, r.Endpoint)
	switch {
	case err == nil || r.Endpoint != "":
	case r.APIKey != "":
		err = configErr(field, "must be set: the region has an API key but no endpoint")
	case cred != nil:
		err = configErr(field, "must be set: the region has an Entra ID credential but no endpoint")
	}
	return u, err
}

// authErr checks that the region authenticates in exactly one way, with a key fit for a header or a credential.
func (rb *regionBuilder) authErr(i int, r *regionConfig, cred azcore.TokenCredential) error {
	n := rb.names
	switch {
	case r.Kind == KindOpenAI && (r.Credential != nil || r.entra):
		return configErr(n.region(i, "Credential"), "is set, but the region is an OpenAI-compatible API (Kind openai), which takes an API key")
	case isNilCredential(r.Credential):
		return configErr(n.region(i, "Credential"), "is a nil %T; was there an error building it?", r.Credential)
	case r.APIKey != "" && r.entra:
		return configErr(n.region(i, "Credential"), "is entra, but %s is set too; a region authenticates with one of the two", n.region(i, "APIKey"))
	case r.APIKey != "" && r.Credential != nil:
		return configErr(n.region(i, "Credential"), "is set, and so is APIKey; a region authenticates with one of the two")
	case r.APIKey == "" && cred == nil && r.Endpoint != "":
		return configErr(n.region(i, "APIKey"), "must be set: the region has an endpoint but no API key; set it, or %s", n.entraHint(i))
	case r.APIKey != "" && !validSecret(r.APIKey):
		return configErr(n.region(i, "APIKey"), "contains spaces, quotes or control characters (a stray newline or quote?)")
	}
	return nil
}

// deploymentErrs checks the region's deployment names, in model order so that errors come in a stable order.
func (rb *regionBuilder) deploymentErrs(i int, r *regionConfig) []error {
	models := make([]string, 0, len(r.Deployments))
	for model := range r.Deployments {
		models = append(models, model)
	}
	sort.Strings(models)
	var errs []error
	for _, model := range models {
		// Values are not quoted: a key pasted into the wrong place must not be printed back.
		name := deploymentName(model, r.Deployments[model])
		if model == "" {
			errs = append(errs, configErr(rb.names.region(i, "Deployments"), "has an empty model name"))
		} else if r.Kind == KindOpenAI {
			// Another provider's model names have slashes and colons (meta-llama/Llama-3.3-70B); they only go
			// in the body.
			if len(name) > 256 || strings.ContainsFunc(name, func(c rune) bool { return c < ' ' || c == 0x7f }) {
				errs = append(errs, configErr(rb.names.region(i, "Deployments"), "maps model %q to an invalid model name; expected 1 to 256 printable characters", model))
			}
		} else if !deploymentPattern.MatchString(name) {
			errs = append(errs, configErr(rb.names.region(i, "Deployments"), "maps model %q to an invalid deployment name; expected 1 to 64 letters, digits, '.', '_' or '-'", model))
		}
	}
	return errs
}

// rank checks the region's priority and weight, and returns the weight with its default applied.
func (rb *regionBuilder) rank(i int, r *regionConfig) (weight int, errs []error) {
	if r.Priority < 0 {
		errs = append(errs, configErr(rb.names.region(i, "Priority"), "is %d; expected 0 or more (lower is tried first)", r.Priority))
	}
	weight = r.Weight
	if weight == 0 {
		weight = 1
	}
	if weight < 0 || weight > maxWeight {
		errs = append(errs, configErr(rb.names.region(i, "Weight"), "is %d; expected 1 to %d (0 means 1)", r.Weight, maxWeight))
	}
	return weight, errs
}

// newRegionBackend builds the backend of a region that passed its checks, authenticating with its API key.
func newRegionBackend(r *regionConfig, u *url.URL, name string, sf surface, version string, weight int) *backend {
	deployments := make(map[string]string, len(r.Deployments))
	for model, deployment := range r.Deployments {
		deployments[model] = deploymentName(model, deployment)
	}
	authHeader, authValue := "Api-Key", []string{r.APIKey}
	if sf == surfaceOpenAI {
		authHeader, authValue = "Authorization", []string{"Bearer " + r.APIKey}
	}
	query := ""
	if version != "" {
		query = "api-version=" + url.QueryEscape(version)
	}
	return &backend{
		name:        name,
		endpoint:    canonicalEndpoint(u),
		surface:     sf,
		scheme:      u.Scheme,
		host:        u.Host,
		path:        u.Path,
		query:       query,
		version:     version,
		authHeader:  authHeader,
		authValue:   authValue,
		secret:      r.APIKey,
		deployments: deployments,
		declared:    len(deployments) > 0,
		priority:    r.Priority,
		weight:      weight,
	}
}

// v1Suffix ends the endpoint of a region on Azure's v1 surface.
const v1Suffix = "/openai/v1"

// surface checks the region's kind and finds the surface its endpoint selects. An Azure endpoint that ends in
// /openai or goes into /openai/deployments would have the classic path written twice: it is refused, saying what
// to give instead.
func (rb *regionBuilder) surface(i int, r *regionConfig, u *url.URL) (surface, error) {
	switch {
	case r.Kind == KindOpenAI:
		return surfaceOpenAI, nil
	case r.Kind != KindAzure:
		return 0, configErr(rb.names.region(i, "Kind"), "is %v; expected KindAzure or KindOpenAI", r.Kind)
	case u == nil:
		return surfaceClassic, nil
	case strings.HasSuffix(u.Path, v1Suffix):
		return surfaceV1, nil
	case strings.HasSuffix(u.Path, "/openai") || strings.Contains(u.Path, "/openai/"):
		return 0, configErr(rb.names.region(i, "Endpoint"), "has an /openai path; expected the resource's base URL (https://my-resource.openai.azure.com), or one ending in %s for Azure's v1 surface", v1Suffix)
	}
	return surfaceClassic, nil
}

// apiVersion checks the region's api-version for its surface and returns the one to send: the classic surface's
// default when none is set; none, or "preview", on the v1 surface, which refuses dated ones; none on an
// OpenAI-compatible API.
func (rb *regionBuilder) apiVersion(i int, r *regionConfig, sf surface) (string, error) {
	field, v := rb.names.region(i, "APIVersion"), r.APIVersion
	switch {
	case sf == surfaceOpenAI && v != "":
		return "", configErr(field, "is set, but the region is an OpenAI-compatible API (Kind openai), which takes no api-version")
	case sf == surfaceV1 && v != "" && v != "preview":
		return "", configErr(field, "is set, but the endpoint is Azure's v1 surface (it ends in %s), which refuses a dated api-version; leave it empty, or set preview for preview features", v1Suffix)
	case sf != surfaceClassic:
		return v, nil
	case v == "":
		return DefaultAPIVersion, nil
	}
	return v, checkAPIVersion(field, v)
}
