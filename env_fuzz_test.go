package failover

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/stretchr/testify/assert"
)

// fuzzMarker is put into every API key the fuzzer builds; it must appear in no error and no formatted output.
const fuzzMarker = "SECRETMARKER"

// fuzzCredential stands in for DefaultAzureCredential, so that fuzzing builds no real one. It is never asked for a
// token: the fuzzer sends no request.
type fuzzCredential struct{}

func (*fuzzCredential) GetToken(context.Context, policy.TokenRequestOptions) (azcore.AccessToken, error) {
	return azcore.AccessToken{}, errors.New("fuzzCredential is never asked for a token")
}

// fuzzEnv builds an environment from dotenv-like lines, NAME=VALUE, split by hand. Every variable whose name holds
// API_KEY gets key with the marker in its middle, followed by the line's own value (so that two keys can differ).
func fuzzEnv(lines, key string) map[string]string {
	secret := key[:len(key)/2] + fuzzMarker + key[len(key)/2:]
	env := make(map[string]string)
	for _, line := range strings.Split(lines, "\n") {
		name, value, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		if strings.Contains(name, "API_KEY") {
			value = secret + value
		}
		env[name] = value
	}
	return env
}

// mentionsMarker reports whether s holds the marker in any case, also once percent-decoded (a URL's path is shown
// decoded, so https://h/SECRETMARK%45R shows the marker without holding it).
func mentionsMarker(s string) bool {
	forms := []string{s}
	if u, err := url.PathUnescape(s); err == nil {
		forms = append(forms, u)
	}
	if u, err := url.QueryUnescape(s); err == nil {
		forms = append(forms, u)
	}
	for _, f := range forms {
		if strings.Contains(strings.ToUpper(f), fuzzMarker) {
			return true
		}
	}
	return false
}

// markerQuotedLegitimately reports whether the marker is in a variable's name or in a value that is not a key:
// then output may show it (as a region's name, say) without leaking a key.
func markerQuotedLegitimately(env map[string]string) bool {
	for name, value := range env {
		if mentionsMarker(name) || (!strings.Contains(name, "API_KEY") && mentionsMarker(value)) {
			return true
		}
	}
	return false
}

// fuzzEnvSeeds are FuzzEnv's seed corpus. builds says whether New accepts the seed, so that the corpus keeps
// reaching both the formatting checks and the errors.
var fuzzEnvSeeds = []struct {
	lines, key string
	builds     bool
}{
	// A realistic two-region setup with keys, the public API and client settings.
	{"AZURE_OPENAI_ENDPOINT_1=https://one.openai.azure.com\nAZURE_OPENAI_API_KEY_1=\nAZURE_OPENAI_REGION_1=eastus\n" +
		"AZURE_OPENAI_ENDPOINT_2=https://two.openai.azure.com/\nAZURE_OPENAI_API_KEY_2=-2\nAZURE_OPENAI_REGION_2=swedencentral\n" +
		"OPENAI_API_KEY=-openai\nFAILOVER_MODEL=gpt-4o\nFAILOVER_STRATEGY=round-robin\nFAILOVER_ATTEMPT_TIMEOUT=30s\nFAILOVER_MAX_WAIT=0",
		"0123456789abcdef0123456789abcdef", true},
	// One region with a key, one with Entra ID.
	{"AZURE_OPENAI_ENDPOINT_1=https://one.openai.azure.com\nAZURE_OPENAI_API_KEY_1=\n" +
		"AZURE_OPENAI_ENDPOINT_2=https://two.openai.azure.com\nAZURE_OPENAI_AUTH_2=entra", "k3y", true},
	{"AZURE_OPENAI_ENDPOINT_1=https://one.openai.azure.com\nAZURE_OPENAI_AUTH_1=entra\n" +
		"AZURE_OPENAI_ENDPOINT_2=https://two.openai.azure.com\nAZURE_OPENAI_API_KEY_2=", "k3y", true},
	// Entra ID and a key for one region: an error that must not show the key.
	{"AZURE_OPENAI_ENDPOINT_1=https://one.openai.azure.com\nAZURE_OPENAI_AUTH_1=ENTRA\nAZURE_OPENAI_API_KEY_1=", "k3y", false},
	// Entra ID for every region without a key; region 3 asks for a key and has none.
	{"AZURE_OPENAI_AUTH=entra\nAZURE_OPENAI_ENDPOINT_1=https://one.openai.azure.com\n" +
		"AZURE_OPENAI_ENDPOINT_2=https://two.openai.azure.com\nAZURE_OPENAI_API_KEY_2=\n" +
		"AZURE_OPENAI_ENDPOINT_3=https://three.openai.azure.com\nAZURE_OPENAI_AUTH_3=key", "k3y", false},
	{"AZURE_OPENAI_AUTH=Entra\nAZURE_OPENAI_ENDPOINT=https://one.openai.azure.com\nAZURE_OPENAI_ENDPOINT_2=https://two.openai.azure.com\n" +
		"AZURE_OPENAI_API_KEY_2=\nAZURE_OPENAI_AUTH_2=key", "", true},
	// Bad authentication modes, and Entra ID without an endpoint.
	{"AZURE_OPENAI_ENDPOINT_1=https://one.openai.azure.com\nAZURE_OPENAI_AUTH_1=bogus\nAZURE_OPENAI_API_KEY_1=", "k3y", false},
	{"AZURE_OPENAI_AUTH=managed\nAZURE_OPENAI_ENDPOINT_1=https://one.openai.azure.com\nAZURE_OPENAI_AUTH_1=", "k3y", false},
	{"AZURE_OPENAI_AUTH_1=entra\nAZURE_OPENAI_REGION_1=eastus", "", false},
	// Keys with a newline, quotes, spaces, control characters.
	{"AZURE_OPENAI_ENDPOINT_1=https://one.openai.azure.com\nAZURE_OPENAI_API_KEY_1=", "abc\ndef", false},
	{"AZURE_OPENAI_ENDPOINT_1=https://one.openai.azure.com\nAZURE_OPENAI_API_KEY_1=\"", "\"quoted key\"", false},
	{"AZURE_OPENAI_ENDPOINT=https://one.openai.azure.com\nAZURE_OPENAI_API_KEY= \nOPENAI_API_KEY='", "key\twith\x7fcontrol", false},
	// Deployments and api-versions.
	{"AZURE_OPENAI_ENDPOINT_1=https://one.openai.azure.com\nAZURE_OPENAI_API_KEY_1=\n" +
		"AZURE_OPENAI_DEPLOYMENTS_1=gpt-4o=prod-4o, text-embedding-3-small=embed,\nAZURE_OPENAI_DEPLOYMENTS=gpt-4o=shared\n" +
		"AZURE_OPENAI_ENDPOINT_2=https://two.openai.azure.com\nAZURE_OPENAI_API_KEY_2=-2\n" +
		"AZURE_OPENAI_API_VERSION=2024-10-21\nAZURE_OPENAI_API_VERSION_1=2025-04-01-preview", "k3y", true},
	{"AZURE_OPENAI_ENDPOINT_1=https://one.openai.azure.com\nAZURE_OPENAI_API_KEY_1=\nAZURE_OPENAI_DEPLOYMENTS=gpt-4o=a,gpt-4o=b", "k3y", false},
	{"AZURE_OPENAI_ENDPOINT_1=https://one.openai.azure.com\nAZURE_OPENAI_API_KEY_1=\nAZURE_OPENAI_DEPLOYMENTS_1=gpt-4o=a/b,x", "k3y", false},
	// Priorities and weights.
	{"AZURE_OPENAI_ENDPOINT_1=https://one.openai.azure.com\nAZURE_OPENAI_API_KEY_1=\nAZURE_OPENAI_PRIORITY_1=1\nAZURE_OPENAI_WEIGHT_1=3\n" +
		"AZURE_OPENAI_ENDPOINT_2=https://two.openai.azure.com\nAZURE_OPENAI_API_KEY_2=\nAZURE_OPENAI_PRIORITY_2=0\nAZURE_OPENAI_WEIGHT_2=1000000\n" +
		"FAILOVER_STRATEGY=weighted", "k3y", true},
	{"AZURE_OPENAI_ENDPOINT_1=https://one.openai.azure.com\nAZURE_OPENAI_API_KEY_1=\nAZURE_OPENAI_PRIORITY_1=-1\n" +
		"AZURE_OPENAI_WEIGHT_1=99999999999999999999", "k3y", false},
	// Odd suffixes.
	{"AZURE_OPENAI_ENDPOINT_0=https://zero.openai.azure.com\nAZURE_OPENAI_API_KEY_0=\nAZURE_OPENAI_ENDPOINT_1000=https://x.openai.azure.com\n" +
		"AZURE_OPENAI_API_KEY_+1=\nAZURE_OPENAI_API_KEY_SECONDARY=\nAZURE_OPENAI_ENDPOINT_01=https://one.openai.azure.com\nAZURE_OPENAI_ENDPOINT_=x", "k3y", false},
	{"AZURE_OPENAI_ENDPOINT_SECONDARY=https://two.openai.azure.com\nAZURE_OPENAI_API_KEY_-1=", "k3y", false},
	{"AZURE_OPENAI_ENDPOINT_999=https://one.openai.azure.com\nAZURE_OPENAI_API_KEY_999=\nAZURE_OPENAI_API_KEY_SECONDARY=-2\nAZURE_OPENAI_AUTH_+1=entra", "k3y", true},
	// Empty values (an empty key cannot be built: every key holds the marker), and an empty name.
	{"AZURE_OPENAI_ENDPOINT_1=\nAZURE_OPENAI_API_KEY_1=\nAZURE_OPENAI_REGION_1=\nAZURE_OPENAI_AUTH=\nOPENAI_API_KEY=\n=\n\n", "", false},
	// The unsuffixed spellings conflicting with region 1's.
	{"AZURE_OPENAI_ENDPOINT=https://one.openai.azure.com\nAZURE_OPENAI_API_KEY=\nAZURE_OPENAI_API_KEY_1=-other", "k3y", false},
	// The public API alone.
	{"OPENAI_API_KEY=", "sk-0123456789", true},
	{"OPENAI_API_KEY=\nOPENAI_BASE_URL=http://api.openai.com/v1", "sk-0123456789", false},
	// A key pasted into the wrong variables.
	{"AZURE_OPENAI_ENDPOINT_1=https://one.openai.azure.com/?key=x\nAZURE_OPENAI_API_KEY_1=\nAZURE_OPENAI_API_VERSION_1=k3y", "k3y", false},
}

// fuzzNew is what FuzzEnv builds a client with: the environment's configuration, a fake Entra ID credential and an
// HTTP client of its own.
func fuzzNew(cfg config) (*Client, error) {
	cfg.opts = append(cfg.opts[:len(cfg.opts):len(cfg.opts)], WithEntraCredential(&fuzzCredential{}), WithHTTPClient(&http.Client{}))
	return build(cfg)
}

func FuzzEnv(f *testing.F) {
	for _, seed := range fuzzEnvSeeds {
		f.Add(seed.lines, seed.key)
	}
	f.Fuzz(func(t *testing.T, lines, key string) {
		env := fuzzEnv(lines, key)
		check := !markerQuotedLegitimately(env)
		leaks := func(what, text string) {
			t.Helper()
			if check && strings.Contains(text, fuzzMarker) {
				t.Fatalf("%s shows a key: %q", what, text)
			}
		}

		cfg, err := configFromEnv(env)
		if err != nil {
			leaks("configFromEnv's error", err.Error())
			return
		}
		c, err := fuzzNew(cfg)
		if err != nil {
			leaks("New's error", err.Error())
			return
		}
		defer c.CloseIdleConnections()
		regions := cfg.regions // a regionConfig shows itself as its Region does
		leaks("formatting", fmt.Sprintf("%v %+v %#v", c, regions, regions))
		data, err := json.Marshal(regions)
		if err != nil {
			leaks("json.Marshal's error", err.Error())
		}
		leaks("JSON", string(data))
		var log bytes.Buffer
		for _, h := range []slog.Handler{slog.NewTextHandler(&log, nil), slog.NewJSONHandler(&log, nil)} {
			logger := slog.New(h)
			logger.Info("client", "client", c, "regions", regions)
			for _, r := range regions {
				logger.Info("region", "region", r)
			}
		}
		leaks("the log", log.String())
	})
}

// TestFuzzEnvSeeds checks FuzzEnv's own machinery: the seeds reach New and its checks as meant, keys carry the
// marker, and the leak check is skipped only when the marker is quoted legitimately.
func TestFuzzEnvSeeds(t *testing.T) {
	for i, seed := range fuzzEnvSeeds {
		cfg, err := configFromEnv(fuzzEnv(seed.lines, seed.key))
		if err == nil {
			var c *Client
			c, err = fuzzNew(cfg)
			if c != nil {
				c.CloseIdleConnections()
			}
		}
		assert.Equal(t, seed.builds, err == nil, "seed %d: %v", i, err)
	}

	env := fuzzEnv("AZURE_OPENAI_API_KEY_1=-1\nOPENAI_API_KEY=\nAZURE_OPENAI_REGION_1=a=b\nnot a variable", "k\ney")
	assert.Equal(t, map[string]string{"AZURE_OPENAI_API_KEY_1": "k\n" + fuzzMarker + "ey-1", "OPENAI_API_KEY": "k\n" + fuzzMarker + "ey",
		"AZURE_OPENAI_REGION_1": "a=b"}, env)
	assert.False(t, markerQuotedLegitimately(env))
	for _, quoted := range []map[string]string{
		{"AZURE_OPENAI_REGION_1": "x" + fuzzMarker},
		{"AZURE_OPENAI_ENDPOINT_1": "https://h/secretmark%45r"},
		{"AZURE_OPENAI_DEPLOYMENTS_1": "gpt-4o=SecretMarker"},
		{"X_" + fuzzMarker: "1"},
	} {
		assert.True(t, markerQuotedLegitimately(quoted), "%v", quoted)
	}
}
