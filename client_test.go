package failover_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/aoai-failover/failover"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const secretKey = "k3y-Sup3rS3cret-0123456789abcdef"

func TestNewRejectsBadConfig(t *testing.T) {
	good := func() failover.Region {
		return failover.Region{Name: "eastus", Endpoint: "https://eastus.openai.azure.com", APIKey: secretKey}
	}
	with := func(f func(*failover.Region)) []failover.Region {
		r := good()
		f(&r)
		return []failover.Region{r}
	}
	cases := []struct {
		name    string
		regions []failover.Region
		opts    []failover.Option
		field   string
		problem string
	}{
		{"endpoint without key", with(func(r *failover.Region) { r.APIKey = "" }), nil, "regions[0].APIKey", "no API key"},
		{"key without endpoint", with(func(r *failover.Region) { r.Endpoint = "" }), nil, "regions[0].Endpoint", "no endpoint"},
		{"unparsable URL", with(func(r *failover.Region) { r.Endpoint = "https://exa mple.com" }), nil, "regions[0].Endpoint", "not an absolute URL"},
		{"relative URL", with(func(r *failover.Region) { r.Endpoint = "eastus.openai.azure.com" }), nil, "regions[0].Endpoint", "not an absolute URL"},
		{"plain http", with(func(r *failover.Region) { r.Endpoint = "http://eastus.openai.azure.com" }), nil, "regions[0].Endpoint", "must use https"},
		{"other scheme", with(func(r *failover.Region) { r.Endpoint = "ftp://eastus.openai.azure.com" }), nil, "regions[0].Endpoint", "scheme other than https"},
		{"user info", with(func(r *failover.Region) { r.Endpoint = "https://me:" + secretKey + "@eastus.openai.azure.com" }), nil, "regions[0].Endpoint", "user info"},
		{"query", with(func(r *failover.Region) { r.Endpoint = "https://eastus.openai.azure.com/?api-version=1" }), nil, "regions[0].Endpoint", "query"},
		{"no host", with(func(r *failover.Region) { r.Endpoint = "https://:443" }), nil, "regions[0].Endpoint", "no valid host name"},
		{"wildcard host", with(func(r *failover.Region) { r.Endpoint = "https://*" }), nil, "regions[0].Endpoint", "no valid host name"},
		{"port out of range", with(func(r *failover.Region) { r.Endpoint = "https://eastus.openai.azure.com:99999" }), nil, "regions[0].Endpoint", "port outside"},
		{"key with a newline", with(func(r *failover.Region) { r.APIKey = secretKey + "\n" }), nil, "regions[0].APIKey", "control characters"},
		{"key in quotes", with(func(r *failover.Region) { r.APIKey = `"` + secretKey + `"` }), nil, "regions[0].APIKey", "quotes"},
		{"bad api version", with(func(r *failover.Region) { r.APIVersion = "latest" }), nil, "regions[0].APIVersion", "expected a date"},
		{"impossible api version date", with(func(r *failover.Region) { r.APIVersion = "2024-99-99" }), nil, "regions[0].APIVersion", "expected a date"},
		{"bad deployment", with(func(r *failover.Region) { r.Deployments = map[string]string{"gpt-4o": secretKey + "/x"} }), nil, "regions[0].Deployments", `model "gpt-4o" to an invalid deployment name`},
		{"empty model", with(func(r *failover.Region) { r.Deployments = map[string]string{"": "dep"} }), nil, "regions[0].Deployments", "empty model"},
		{"duplicate endpoint", []failover.Region{good(), func() failover.Region {
			r := good()
			r.Name, r.Endpoint = "again", "https://EASTUS.openai.azure.com/"
			return r
		}()}, nil, "regions[1].Endpoint", "same endpoint as regions[0].Endpoint"},
		{"duplicate name", []failover.Region{good(), func() failover.Region {
			r := good()
			r.Endpoint = "https://westus.openai.azure.com"
			return r
		}()}, nil, "regions[1].Name", "must be unique"},
		{"same endpoint, default port and trailing dot", []failover.Region{good(), func() failover.Region {
			r := good()
			r.Name, r.Endpoint = "again", "https://eastus.openai.azure.com.:443"
			return r
		}()}, nil, "regions[1].Endpoint", "same endpoint as regions[0].Endpoint"},
		{"same default name", []failover.Region{
			{Endpoint: "https://gw.example.com/eastus", APIKey: secretKey},
			{Endpoint: "https://gw.example.com/eastus/", APIKey: secretKey, APIVersion: "2025-01-01-preview"},
		}, nil, "regions[1].Endpoint", "same endpoint"},
		{"the fallback's name", with(func(r *failover.Region) { r.Name = "openai" }),
			[]failover.Option{failover.WithOpenAIFallback(secretKey, "")}, "regions[0].Name", "the name of the OpenAI fallback"},
		{"nothing at all", nil, nil, "regions", "no OpenAI fallback"},
		{"fallback without key", nil, []failover.Option{failover.WithOpenAIFallback("", "")}, "WithOpenAIFallback(apiKey)", "needs an API key"},
		{"fallback over http", nil, []failover.Option{failover.WithOpenAIFallback(secretKey, "http://api.openai.com/v1")}, "WithOpenAIFallback(baseURL)", "must use https"},
		{"zero attempt timeout", []failover.Region{good()}, []failover.Option{failover.WithAttemptTimeout(0)}, "WithAttemptTimeout", "positive"},
		{"negative attempt timeout", []failover.Region{good()}, []failover.Option{failover.WithAttemptTimeout(-time.Second)}, "WithAttemptTimeout", "positive"},
		{"temperature", []failover.Region{good()}, []failover.Option{failover.WithTemperature(2.5)}, "WithTemperature", "from 0 to 2"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			client, err := failover.New(tc.regions, tc.opts...)
			require.Error(t, err)
			assert.Nil(t, client, "nothing half-built is returned")
			assert.ErrorIs(t, err, failover.ErrConfig)
			var cfgErr *failover.ConfigError
			require.ErrorAs(t, err, &cfgErr)
			assert.Equal(t, tc.field, cfgErr.Field)
			assert.Contains(t, cfgErr.Problem, tc.problem)
			assert.True(t, strings.HasPrefix(err.Error(), "failover: "+tc.field+": "), err.Error())
			assert.NotContains(t, err.Error(), secretKey)
		})
	}
}

func TestNewReportsEveryProblemAtOnce(t *testing.T) {
	_, err := failover.New([]failover.Region{
		{Endpoint: "http://eastus.openai.azure.com", APIKey: secretKey},
		{Endpoint: "https://westus.openai.azure.com"},
	}, failover.WithAttemptTimeout(-1))
	require.Error(t, err)
	var fields []string
	for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
		var cfgErr *failover.ConfigError
		require.True(t, errors.As(e, &cfgErr))
		fields = append(fields, cfgErr.Field)
	}
	assert.Equal(t, []string{"regions[0].Endpoint", "regions[1].APIKey", "WithAttemptTimeout"}, fields)
}

func TestNewAcceptsGoodConfig(t *testing.T) {
	client, err := failover.New([]failover.Region{
		{Endpoint: "https://eastus.openai.azure.com/", APIKey: secretKey},
		{Name: "west", Endpoint: "https://westus.openai.azure.com/apim/v2", APIKey: secretKey, APIVersion: "2025-04-01-preview",
			Deployments: map[string]string{"gpt-4o": "gpt-4o_prod.2"}},
		{Name: "local", Endpoint: "http://127.0.0.1:8080", APIKey: secretKey},
		{Name: "local6", Endpoint: "http://[::1]:8080", APIKey: secretKey},
		{Name: "localhost", Endpoint: "http://localhost:8080", APIKey: secretKey},
		// Two paths of one API Management gateway are two regions, with distinct default names.
		{Endpoint: "https://gw.example.com/eastus", APIKey: secretKey},
		{Endpoint: "https://gw.example.com/westus", APIKey: secretKey},
	}, failover.WithOpenAIFallback(secretKey, ""), failover.WithAttemptTimeout(5*time.Second), failover.WithTemperature(0))
	require.NoError(t, err)
	assert.Equal(t, []string{"eastus.openai.azure.com", "west", "local", "local6", "localhost",
		"gw.example.com/eastus", "gw.example.com/westus", "openai"}, client.Regions())
	assert.Equal(t, 5*time.Second, client.AttemptTimeout())
}
