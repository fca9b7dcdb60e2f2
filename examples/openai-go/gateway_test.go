package main

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/aoai-failover/failover/failovertest"
	"github.com/aoai-failover/failover/gateway"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/azure"
	"github.com/openai/openai-go/v3/option"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// openai-go against the gateway: the same failover for a program that cannot take the failover client as its
// transport (another process, another language), reached over real HTTP on loopback.

// gatewayKey is what callers present to the gateway; it must never reach a region.
const gatewayKey = "gwkey-8c2e41f7a9"

// gatewayFleet is two fake regions behind a failover client behind a gateway on a loopback port.
type gatewayFleet struct {
	regions []*failovertest.Server
	url     string
	hits    *countingHandler // requests the gateway received
}

// startGateway starts the fleet; the gateway admits gatewayKey.
func startGateway(t *testing.T) *gatewayFleet {
	t.Helper()
	f := &gatewayFleet{regions: startRegions(t, "eastus", "westus")}
	gw, err := gateway.New(newFailover(t, azureRegions(f.regions...)), gateway.Config{Keys: []string{gatewayKey}})
	require.NoError(t, err)
	f.hits = &countingHandler{next: gw}
	srv := httptest.NewServer(f.hits)
	t.Cleanup(srv.Close)
	f.url = srv.URL
	return f
}

// gatewayClients are the ways openai-go reaches the gateway: as an OpenAI client (Bearer key, /v1/…), as an Azure
// client through the azure package (api-key, /openai/deployments/{model}/…, a dated api-version) and as an
// OpenAI client pointed at Azure's v1 surface (/openai/v1/…). openai-go's own HTTP client, not the failover
// client, carries them: the failover is behind the gateway.
var gatewayClients = []struct {
	name string
	new  func(url string) openai.Client
}{
	{"openai", func(url string) openai.Client {
		return openai.NewClient(option.WithBaseURL(url+"/v1/"), option.WithAPIKey(gatewayKey))
	}},
	{"azure", func(url string) openai.Client {
		// The gateway is a plaintext loopback server: WithUnsafeAllowHTTP is what lets the azure package send
		// it a key over http (on its own direct transport, which is what a real server needs anyway).
		return openai.NewClient(azure.WithEndpoint(url, "2024-10-21"), azure.WithAPIKey(gatewayKey),
			azure.WithUnsafeAllowHTTP())
	}},
	{"azure v1", func(url string) openai.Client {
		return openai.NewClient(option.WithBaseURL(url+"/openai/v1/"), option.WithAPIKey(gatewayKey))
	}},
}

// TestGatewayFailsOver: each operation, from each kind of openai-go client, is served by the second region when
// the first is throttled, with the regions' own keys, never the gateway's.
func TestGatewayFailsOver(t *testing.T) {
	for _, gc := range gatewayClients {
		for _, op := range operations {
			t.Run(gc.name+"/"+op.name, func(t *testing.T) {
				f := startGateway(t)
				f.regions[0].Script(failovertest.RateLimited(30 * time.Second))

				answer, err := op.call(t, t.Context(), gc.new(f.url))
				require.NoError(t, err)
				assert.Equal(t, wantAnswer(op, f.regions[1]), answer, "the second region wrote the answer")

				assert.Equal(t, int64(1), f.hits.calls.Load())
				assert.Equal(t, []int{http.StatusTooManyRequests}, statuses(f.regions[0]))
				require.Equal(t, []int{http.StatusOK}, statuses(f.regions[1]))
				served := f.regions[1].Calls()[0]
				assert.Equal(t, op.operation, served.Operation)
				assert.Equal(t, op.deployment("westus"), served.Deployment)
				assert.Equal(t, op.name == "stream", served.Stream)
				for _, s := range f.regions {
					assertOnlyOwnKey(t, s, gatewayKey)
				}
			})
		}
	}
}

// TestGatewayAnswersOnceWhenEveryRegionIsThrottled: the gateway's 429 says not to retry, and each kind of
// openai-go client obeys, with its default retries on: one request to the gateway, one to each region.
func TestGatewayAnswersOnceWhenEveryRegionIsThrottled(t *testing.T) {
	for _, gc := range gatewayClients {
		for _, op := range operations {
			t.Run(gc.name+"/"+op.name, func(t *testing.T) {
				f := startGateway(t)
				for _, s := range f.regions {
					s.SetDefault(failovertest.RateLimited(30 * time.Second))
				}

				_, err := op.call(t, t.Context(), gc.new(f.url))
				var apiErr *openai.Error
				require.ErrorAs(t, err, &apiErr)
				assert.Equal(t, http.StatusTooManyRequests, apiErr.StatusCode)
				assert.Equal(t, "false", apiErr.Response.Header.Get("X-Should-Retry"))
				assert.NotEmpty(t, apiErr.Response.Header.Get("Retry-After"))
				assert.Equal(t, int64(1), f.hits.calls.Load(), "the SDK did not retry")
				for _, s := range f.regions {
					assert.Equal(t, 1, s.Requests(), "%s was asked once", s.Name)
					assertOnlyOwnKey(t, s, gatewayKey)
				}
			})
		}
	}
}
