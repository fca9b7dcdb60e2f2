package failover

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
)

// DefaultAPIVersion is the Azure OpenAI api-version sent when a region sets none: the latest generally available
// version of the inference API.
const DefaultAPIVersion = "2024-10-21"

// Region is one Azure OpenAI resource, in one Azure region, that can serve requests.
//
// A region authenticates with an API key or with a Microsoft Entra ID credential (managed identity, workload
// identity, a service principal): exactly one of APIKey and Credential is set.
//
// Region formats itself (%v, %+v, %#v, %s and every other verb), marshals to JSON and logs with log/slog with the
// API key redacted and only the credential's type shown. JSON from MarshalJSON therefore does not round-trip: it is
// for showing, not storing.
type Region struct {
	// Name is shown in errors, logs and traces. Default: the endpoint's host and path, such as
	// my-resource.openai.azure.com.
	Name string
	// Endpoint is the resource's base URL, such as https://my-resource.openai.azure.com. It must use https;
	// plain http is accepted only for loopback hosts (127.0.0.1, ::1, localhost), so tests can use httptest.
	Endpoint string
	// APIKey is sent in the api-key header. It is a secret: it never appears in errors, logs or formatted output.
	APIKey string
	// Credential, instead of APIKey, authenticates with Microsoft Entra ID: each request carries a token for
	// EntraScope in an Authorization: Bearer header. Tokens are cached and replaced 5 minutes before they expire
	// (or halfway through the time a shorter-lived one had left when it came, or at the RefreshOn the credential
	// gives, when sooner). Regions given the same credential (the same pointer) share one token and one refresh.
	// A credential that gives no token is a failure of this region: it rests, and the request goes on to the
	// next; a refresh that fails while the token is still valid keeps the token. An *azidentity.DefaultAzureCredential or *azidentity.ManagedIdentityCredential is the
	// usual choice; the identity needs the "Cognitive Services OpenAI User" role on the resource.
	Credential azcore.TokenCredential
	// APIVersion is the api-version query parameter. Default: DefaultAPIVersion.
	APIVersion string
	// Deployments declares the models this resource has, each mapped to its deployment name (empty: the
	// model's own name). When it is set,
	// requests for any other model never go to this region (so a region without an embeddings model never
	// receives an embeddings request). Empty: the region is taken to have every model, under a deployment of the
	// model's name, until a 404 says otherwise.
	Deployments map[string]string
	// Priority orders regions: every region of a lower number is tried before any of a higher one. Regions of
	// one priority are ordered by the client's Strategy. Default 0; must not be negative.
	Priority int
	// Weight is the region's share of load among regions of its priority under StrategyWeighted. Default (0): 1.
	Weight int

	// env names the environment variables this region was read from, so errors name them; nil for Go values.
	env *regionEnv
}

// regionEnv holds the names of the variables a region was read from.
type regionEnv struct {
	endpoint, apiKey, name, apiVersion, deployments, priority, weight, auth string
	entra                                                                   bool // AZURE_OPENAI_AUTH(_N)=entra: the client's Entra ID credential
}

// Format writes the region with its API key redacted, whatever the verb.
func (r Region) Format(f fmt.State, verb rune) {
	s := r.shown()
	fmt.Fprintf(f, "{Name:%s Endpoint:%s APIKey:%s Credential:%s APIVersion:%s Deployments:%s Priority:%d Weight:%d}",
		s.Name, s.Endpoint, s.APIKey, s.Credential, s.APIVersion, formatDeployments(s.Deployments), s.Priority, s.Weight)
}

// redactURL prints an endpoint without the parts that can carry credentials: user info and query. New rejects
// such endpoints, but a Region may be printed before New sees it.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "<invalid URL>"
	}
	if u.User != nil {
		u.User = url.User(redacted)
	}
	if u.RawQuery != "" {
		u.RawQuery = redacted
	}
	u.Fragment, u.RawFragment = "", ""
	return u.String()
}

const redacted = "[REDACTED]"

// shownRegion is a Region as it may be shown: without its key.
type shownRegion struct {
	Name        string            `json:"name,omitempty"`
	Endpoint    string            `json:"endpoint"`
	APIKey      string            `json:"api_key,omitempty"`
	Credential  string            `json:"credential,omitempty"`
	APIVersion  string            `json:"api_version,omitempty"`
	Deployments map[string]string `json:"deployments,omitempty"`
	Priority    int               `json:"priority,omitempty"`
	Weight      int               `json:"weight,omitempty"`
}

func (r Region) shown() shownRegion {
	s := shownRegion{Name: r.Name, Endpoint: redactURL(r.Endpoint), APIVersion: r.APIVersion, Deployments: r.Deployments,
		Priority: r.Priority, Weight: r.Weight}
	if r.APIKey != "" {
		s.APIKey = redacted
	}
	s.Credential = r.credentialName()
	return s
}

// credentialName shows the region's credential by its type, never its contents: a credential's fields can hold a
// client secret.
func (r Region) credentialName() string {
	switch {
	case r.Credential != nil:
		return fmt.Sprintf("%T", r.Credential)
	case r.env != nil && r.env.entra:
		return "entra" // the client's credential, chosen by New
	}
	return ""
}

// MarshalJSON writes the region with its API key redacted.
func (r Region) MarshalJSON() ([]byte, error) { return json.Marshal(r.shown()) }

// LogValue logs the region with its API key redacted.
func (r Region) LogValue() slog.Value {
	s := r.shown()
	return slog.GroupValue(slog.String("name", s.Name), slog.String("endpoint", s.Endpoint),
		slog.String("api_key", s.APIKey), slog.String("credential", s.Credential), slog.String("api_version", s.APIVersion),
		slog.String("deployments", formatDeployments(s.Deployments)), slog.Int("priority", s.Priority),
		slog.Int("weight", s.Weight))
}

func formatDeployments(m map[string]string) string {
	models := make([]string, 0, len(m))
	for model := range m {
		models = append(models, model)
	}
	sort.Strings(models)
	for i, model := range models {
		models[i] = model + "=" + m[model]
	}
	return "[" + strings.Join(models, " ") + "]"
}

// field names one of the region's fields in an error: the environment variable it came from, or its Go path.
func (r *Region) field(i int, name string) string {
	if r.env != nil {
		var v string
		switch name {
		case "Endpoint":
			v = r.env.endpoint
		case "APIKey":
			v = r.env.apiKey
		case "Name":
			v = r.env.name
		case "APIVersion":
			v = r.env.apiVersion
		case "Deployments":
			v = r.env.deployments
		case "Priority":
			v = r.env.priority
		case "Weight":
			v = r.env.weight
		case "Credential":
			v = r.env.auth
		}
		if v != "" {
			return v
		}
	}
	return fmt.Sprintf("regions[%d].%s", i, name)
}

var (
	apiVersionPattern = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}(-preview)?$`)
	// deploymentPattern is what Azure accepts as a deployment name.
	deploymentPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)
)

// parseEndpoint checks a base URL and returns it without a trailing slash. Errors never repeat the URL: it could
// carry credentials in its user-info part.
func parseEndpoint(field, raw string) (*url.URL, error) {
	if raw == "" {
		return nil, configErr(field, "must be set: a base URL such as https://my-resource.openai.azure.com")
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.Opaque != "" {
		return nil, configErr(field, "is not an absolute URL; expected a base URL such as https://my-resource.openai.azure.com")
	}
	switch {
	case u.User != nil:
		return nil, configErr(field, "must not contain user info (user:password@); credentials go in the API key")
	case u.RawQuery != "" || u.ForceQuery:
		return nil, configErr(field, "must not contain a query; the api-version has its own setting")
	case u.Fragment != "":
		return nil, configErr(field, "must not contain a fragment (#...)")
	case u.Scheme == "https":
	case u.Scheme == "http" && isLoopback(u.Hostname()):
	case u.Scheme == "http":
		return nil, configErr(field, "must use https; plain http is allowed only for loopback hosts (127.0.0.1, ::1, localhost)")
	default:
		return nil, configErr(field, "has a scheme other than https")
	}
	if !validHostname(u.Hostname()) {
		return nil, configErr(field, "has no valid host name; expected a base URL such as https://my-resource.openai.azure.com")
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return nil, configErr(field, "has a port outside 1 to 65535")
		}
	}
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = ""
	return u, nil
}

// validHostname accepts DNS names and IP addresses.
func validHostname(h string) bool {
	if net.ParseIP(h) != nil {
		return true
	}
	if h == "" || len(h) > 253 {
		return false
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_') {
			return false
		}
	}
	return true
}

// canonicalEndpoint is what makes two endpoints the same resource: case, a trailing dot and a default port do
// not count.
func canonicalEndpoint(u *url.URL) string {
	host := strings.TrimSuffix(strings.ToLower(u.Hostname()), ".")
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	if p := u.Port(); p != "" && !(u.Scheme == "https" && p == "443") && !(u.Scheme == "http" && p == "80") {
		host += ":" + p
	}
	return u.Scheme + "://" + host + u.Path
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// validSecret reports whether s can be sent in an HTTP header as is. A stray newline or quote from a .env file is
// the usual cause of a false answer.
func validSecret(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c == 0x7f || c == '"' || c == '\'' {
			return false
		}
	}
	return true
}

// isNilCredential reports whether cred is a typed nil pointer, such as what a failed
// azidentity.NewDefaultAzureCredential returns alongside its error: it would panic at the first request.
func isNilCredential(cred azcore.TokenCredential) bool {
	v := reflect.ValueOf(cred)
	return cred != nil && v.Kind() == reflect.Pointer && v.IsNil()
}

// entraFromEnv reports whether the region was configured with AZURE_OPENAI_AUTH(_N)=entra, so that it takes the
// client's Entra ID credential.
func (r *Region) entraFromEnv() bool { return r.env != nil && r.env.entra }

// newRegionBackend validates region i and builds the backend that serves it. tokens holds the token sources of
// the credentials seen so far; entra is the client's credential for regions configured with
// AZURE_OPENAI_AUTH=entra.
func newRegionBackend(i int, r *Region, tokens tokenSources, entra azcore.TokenCredential, logger *slog.Logger) (*backend, []error) {
	var errs []error
	cred := r.Credential
	if cred == nil && r.entraFromEnv() {
		cred = entra
	}
	u, err := parseEndpoint(r.field(i, "Endpoint"), r.Endpoint)
	if err != nil {
		switch {
		case r.Endpoint == "" && r.APIKey != "":
			err = configErr(r.field(i, "Endpoint"), "must be set: the region has an API key but no endpoint")
		case r.Endpoint == "" && cred != nil:
			err = configErr(r.field(i, "Endpoint"), "must be set: the region has an Entra ID credential but no endpoint")
		}
		errs = append(errs, err)
	}
	switch {
	case isNilCredential(r.Credential):
		errs = append(errs, configErr(r.field(i, "Credential"), "is a nil %T; was there an error building it?", r.Credential))
	case r.APIKey != "" && (r.Credential != nil || r.entraFromEnv()):
		problem := "is set, and so is APIKey; a region authenticates with one of the two"
		if r.env != nil {
			problem = fmt.Sprintf("is entra, but %s is set too; a region authenticates with one of the two", r.field(i, "APIKey"))
		}
		errs = append(errs, configErr(r.field(i, "Credential"), "%s", problem))
	case r.APIKey == "" && cred == nil && r.Endpoint != "":
		how := "set Credential for Microsoft Entra ID"
		if r.env != nil {
			how = fmt.Sprintf("set %s=entra for Microsoft Entra ID (managed identity)", r.field(i, "Credential"))
		}
		errs = append(errs, configErr(r.field(i, "APIKey"), "must be set: the region has an endpoint but no API key; set it, or %s", how))
	case r.APIKey == "":
	case !validSecret(r.APIKey):
		errs = append(errs, configErr(r.field(i, "APIKey"), "contains spaces, quotes or control characters (a stray newline or quote?)"))
	}
	version := r.APIVersion
	if version == "" {
		version = DefaultAPIVersion
	} else if err := checkAPIVersion(r.field(i, "APIVersion"), version); err != nil {
		errs = append(errs, err)
	}
	models := make([]string, 0, len(r.Deployments))
	for model := range r.Deployments {
		models = append(models, model)
	}
	sort.Strings(models)
	for _, model := range models {
		// Values are not quoted: a key pasted into the wrong place must not be printed back.
		if model == "" {
			errs = append(errs, configErr(r.field(i, "Deployments"), "has an empty model name"))
		} else if !deploymentPattern.MatchString(deploymentName(model, r.Deployments[model])) {
			errs = append(errs, configErr(r.field(i, "Deployments"), "maps model %q to an invalid deployment name; expected 1 to 64 letters, digits, '.', '_' or '-'", model))
		}
	}
	if r.Priority < 0 {
		errs = append(errs, configErr(r.field(i, "Priority"), "is %d; expected 0 or more (lower is tried first)", r.Priority))
	}
	weight := r.Weight
	if weight == 0 {
		weight = 1
	}
	if weight < 0 || weight > maxWeight {
		errs = append(errs, configErr(r.field(i, "Weight"), "is %d; expected 1 to %d (0 means 1)", r.Weight, maxWeight))
	}
	name := r.Name
	if name == "" && u != nil {
		name = u.Host + u.Path
	}
	if strings.ContainsFunc(name, func(c rune) bool { return c < ' ' || c == 0x7f }) {
		errs = append(errs, configErr(r.field(i, "Name"), "contains control characters"))
	}
	if len(errs) > 0 {
		return nil, errs
	}
	deployments := make(map[string]string, len(r.Deployments))
	for model, deployment := range r.Deployments {
		deployments[model] = deploymentName(model, deployment)
	}
	b := &backend{
		name:        name,
		endpoint:    canonicalEndpoint(u),
		azure:       true,
		scheme:      u.Scheme,
		host:        u.Host,
		path:        u.Path,
		query:       "api-version=" + url.QueryEscape(version),
		authHeader:  "Api-Key",
		authValue:   []string{r.APIKey},
		secret:      r.APIKey,
		deployments: deployments,
		declared:    len(deployments) > 0,
		priority:    r.Priority,
		weight:      weight,
	}
	if cred != nil {
		b.authHeader, b.authValue, b.tokens = "Authorization", nil, tokens.get(cred, logger)
	}
	return b, nil
}

// deploymentName is the deployment of model: the one given, or the model's own name.
func deploymentName(model, deployment string) string {
	if deployment == "" {
		return model
	}
	return deployment
}

// maxWeight bounds Region.Weight, so that weights add up without overflow.
const maxWeight = 1_000_000

// checkAPIVersion accepts a real date such as 2024-10-21, optionally followed by -preview.
func checkAPIVersion(field, v string) error {
	if apiVersionPattern.MatchString(v) {
		if _, err := time.Parse(time.DateOnly, v[:10]); err == nil {
			return nil
		}
	}
	return configErr(field, "is not an api-version; expected a date such as %s, optionally ending in -preview", DefaultAPIVersion)
}
