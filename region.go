package failover

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/url"
	"sort"
	"strings"

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
	// APIVersion is the api-version query parameter of the classic surface. Default: DefaultAPIVersion. It is a
	// floor, not a ceiling: a request that asks for a newer api-version (an SDK's own) is sent with that one. A
	// v1 region takes none (or "preview", for preview features), and a KindOpenAI region none.
	APIVersion string
	// Deployments declares the models this resource has, each mapped to its deployment name (empty: the
	// model's own name; on a KindOpenAI region, the name the provider gives the model). When it is set,
	// requests for any other model never go to this region (so a region without an embeddings model never
	// receives an embeddings request). Empty: the region is taken to have every model, under a deployment of the
	// model's name, until a 404 says otherwise.
	Deployments map[string]string
	// Priority orders regions: every region of a lower number is tried before any of a higher one. Regions of
	// one priority are ordered by the client's Strategy. Default 0; must not be negative.
	Priority int
	// Weight is the region's share of load among regions of its priority under StrategyWeighted. Default (0): 1.
	Weight int
	// Kind is the API the region speaks: KindAzure (the default: classic or v1, as the Endpoint says) or
	// KindOpenAI (any OpenAI-compatible API).
	Kind Kind
}

// Kind is the API a region speaks.
type Kind uint8

const (
	// KindAzure is Azure OpenAI, the default. An Endpoint ending in /openai/v1 selects Azure's v1 surface:
	// {endpoint}/chat/completions, the deployment's name in the body's model, no dated api-version. Any other
	// Endpoint is the resource's base URL for the classic surface:
	// {endpoint}/openai/deployments/{deployment}/chat/completions?api-version=…. Both take the key in an api-key
	// header, or an Entra ID token as Authorization: Bearer.
	KindAzure Kind = iota
	// KindOpenAI is an OpenAI-compatible API at any base URL (the public API's https://api.openai.com/v1, a
	// second OpenAI organisation, another provider's OpenAI-compatible endpoint): {endpoint}/chat/completions
	// with Authorization: Bearer APIKey, and the model, mapped by Deployments, in the body.
	KindOpenAI
)

var kindNames = [...]string{"azure", "openai"}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("Kind(%d)", uint8(k))
}

// Format writes the region with its API key redacted, whatever the verb.
func (r Region) Format(f fmt.State, verb rune) {
	s := r.shown()
	fmt.Fprintf(f, "{Name:%s Endpoint:%s APIKey:%s Credential:%s APIVersion:%s Deployments:%s Priority:%d Weight:%d Kind:%s}",
		s.Name, s.Endpoint, s.APIKey, s.Credential, s.APIVersion, formatDeployments(s.Deployments), s.Priority, s.Weight, r.Kind)
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
	Kind        string            `json:"kind"`
}

func (r Region) shown() shownRegion {
	s := shownRegion{Name: r.Name, Endpoint: redactURL(r.Endpoint), APIVersion: r.APIVersion, Deployments: r.Deployments,
		Priority: r.Priority, Weight: r.Weight, Kind: r.Kind.String()}
	if r.APIKey != "" {
		s.APIKey = redacted
	}
	s.Credential = r.credentialName()
	return s
}

// credentialName shows the region's credential by its type, never its contents: a credential's fields can hold a
// client secret.
func (r Region) credentialName() string {
	if r.Credential == nil {
		return ""
	}
	return fmt.Sprintf("%T", r.Credential)
}

// MarshalJSON writes the region with its API key redacted.
func (r Region) MarshalJSON() ([]byte, error) { return json.Marshal(r.shown()) }

// LogValue logs the region with its API key redacted.
func (r Region) LogValue() slog.Value {
	s := r.shown()
	return slog.GroupValue(slog.String("name", s.Name), slog.String("endpoint", s.Endpoint),
		slog.String("api_key", s.APIKey), slog.String("credential", s.Credential), slog.String("api_version", s.APIVersion),
		slog.String("deployments", formatDeployments(s.Deployments)), slog.Int("priority", s.Priority),
		slog.Int("weight", s.Weight), slog.String("kind", s.Kind))
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
