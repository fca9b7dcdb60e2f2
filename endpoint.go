package failover

import (
	"net"
	"net/url"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
)

// The checks of single values, shared by every source of configuration. Each takes the name the caller's source
// gives the value, so that its error names what the user wrote.

var (
	apiVersionPattern = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}(-preview)?$`)
	// deploymentPattern is what Azure accepts as a deployment name.
	deploymentPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)
)

// maxWeight bounds Region.Weight, so that weights add up without overflow.
const maxWeight = 1_000_000

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

// checkAPIVersion accepts a real date such as 2024-10-21, optionally followed by -preview.
func checkAPIVersion(field, v string) error {
	if apiVersionPattern.MatchString(v) {
		if _, err := time.Parse(time.DateOnly, v[:10]); err == nil {
			return nil
		}
	}
	return configErr(field, "is not an api-version; expected a date such as %s, optionally ending in -preview", DefaultAPIVersion)
}

// deploymentName is the deployment of model: the one given, or the model's own name.
func deploymentName(model, deployment string) string {
	if deployment == "" {
		return model
	}
	return deployment
}
