package failover

import (
	"net/http"
	"strings"
	"testing"
)

// scrubEngine is the engine of a typical client: two regions and the OpenAI fallback, three keys.
func scrubEngine(b *testing.B) *engine {
	b.Helper()
	c, err := New([]Region{
		{Name: "eastus", Endpoint: "https://eastus.example.invalid", APIKey: "0123456789abcdef0123456789abcdef"},
		{Name: "westus", Endpoint: "https://westus.example.invalid", APIKey: "fedcba9876543210fedcba9876543210"},
	}, WithOpenAIFallback("sk-proj-"+strings.Repeat("Ab3", 52), ""))
	if err != nil {
		b.Fatal(err)
	}
	return c.engine
}

// errorBody1KiB is a typical error answer of about 1 KiB: Azure's 429 with its inner error.
var errorBody1KiB = []byte(`{"error":{"code":"429","message":"Requests to the ChatCompletions_Create Operation under Azure OpenAI API version 2024-10-21 have exceeded token rate limit of your current OpenAI S0 pricing tier. Please retry after 18 seconds. Please go here: https://aka.ms/oai/quotaincrease if you would like to further increase the default rate limit. For more information, see https://learn.microsoft.com/azure/ai-services/openai/quotas-limits and the documentation of your deployment.","innererror":{"code":"RateLimitExceeded","content_filter_result":null},"details":[{"code":"TokenRateLimit","target":"gpt-4o","message":"The deployment gpt-4o in region eastus has used 120000 of 120000 tokens per minute; the window resets in 18 seconds. Requests are counted per deployment and per region, and the limit applies to the sum of prompt and completion tokens of every request."}],"request_id":"5e3c9a3e-6c1b-4a53-9a1e-1f0b7e3d2a41","status":429,"type":"rate_limit_error","param":null}}`)

// servedHeaders are the headers of a served chat completion from Azure OpenAI.
func servedHeaders() http.Header {
	return http.Header{
		"Content-Type":                   {"application/json"},
		"Content-Length":                 {"1187"},
		"Date":                           {"Thu, 03 Dec 2026 05:00:00 GMT"},
		"Apim-Request-Id":                {"5e3c9a3e-6c1b-4a53-9a1e-1f0b7e3d2a41"},
		"Strict-Transport-Security":      {"max-age=31536000; includeSubDomains; preload"},
		"X-Content-Type-Options":         {"nosniff"},
		"X-Ms-Region":                    {"East US"},
		"X-Ratelimit-Remaining-Requests": {"1199"},
		"X-Ratelimit-Limit-Requests":     {"1200"},
		"X-Ratelimit-Remaining-Tokens":   {"119850"},
		"X-Ratelimit-Limit-Tokens":       {"120000"},
		"X-Request-Id":                   {"0c1d2e3f-4a5b-6c7d-8e9f-0a1b2c3d4e5f"},
		"Azureml-Model-Session":          {"d123-20261201123456"},
		"X-Ms-Rai-Invoked":               {"true"},
		"X-Ms-Deployment-Name":           {"gpt-4o"},
		"X-Ms-Client-Request-Id":         {"7f6e5d4c-3b2a-1908-f7e6-d5c4b3a29180"},
		"Cmp-Upstream-Response-Duration": {"412"},
	}
}

// BenchmarkScrubErrorBody is what scrubbing a 1 KiB error answer that holds no secret costs: what every error
// answer pays.
func BenchmarkScrubErrorBody(b *testing.B) {
	e := scrubEngine(b)
	b.SetBytes(int64(len(errorBody1KiB)))
	b.ReportAllocs()
	for b.Loop() {
		if _, changed := e.scrub(errorBody1KiB); changed {
			b.Fatal("nothing to scrub")
		}
	}
}

// BenchmarkScrubServedHeaders is what scrubbing the headers of a served answer costs: what every request pays.
func BenchmarkScrubServedHeaders(b *testing.B) {
	e := scrubEngine(b)
	h := servedHeaders()
	b.ReportAllocs()
	for b.Loop() {
		e.scrubHeader(h)
	}
}
