package failover_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/aoai-failover/failover"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// refusedIdentity is an Entra ID credential that can never give a token here, as azidentity's "credential
// unavailable" errors say (they implement NonRetriable): the client's own identity is refused.
type refusedIdentity struct{}

type identityUnavailable struct{}

func (identityUnavailable) Error() string { return "no managed identity is assigned to this machine" }
func (identityUnavailable) NonRetriable() {}

func (*refusedIdentity) GetToken(context.Context, policy.TokenRequestOptions) (azcore.AccessToken, error) {
	return azcore.AccessToken{}, identityUnavailable{}
}

// TestRefusedIdentityIsA502: when the only region refuses the client's own identity (its Entra ID credential
// cannot give a token: a fault, rested like a 401), RoundTrip must answer 502 upstream_credentials_refused, as it
// does for a 401 and as it does for the next request, which passes the resting region over. (Found in review:
// why() in httperror.go counted the attempt by its HTTP status only, 0 as nothing was sent, so the first request
// got 503 with a five-minute Retry-After.)
func TestRefusedIdentityIsA502(t *testing.T) {
	servers := startRegions(t, []string{"eastus"})
	client := newClient(t, []failover.Region{{Name: "eastus", Endpoint: servers[0].URL, Credential: &refusedIdentity{}}},
		failover.WithMaxWait(0))
	for i := range 2 {
		resp, err := postChat(t, t.Context(), transportClient(client))
		require.NoError(t, err)
		code, message := answerErrorBody(t, resp)
		assert.Equal(t, http.StatusBadGateway, resp.StatusCode, "request %d: %s", i+1, message)
		assert.Equal(t, "upstream_credentials_refused", code, "request %d", i+1)
	}
	assert.Zero(t, servers[0].Requests())
}

// TestLegacyCompletionsOfDeploymentNamedChat: the legacy completions of a deployment named "chat" is
// /openai/deployments/chat/completions (openai-go's azure package and go-openai build it so). (Found in review:
// operationOf in backend.go matched the suffix /chat/completions first, so the request was taken for a chat
// completion of a model the path does not name: sent to the region as chat/completions, or refused with 400 when
// the body named no model.)
func TestLegacyCompletionsOfDeploymentNamedChat(t *testing.T) {
	servers := startRegions(t, []string{"eastus"})
	client := newClient(t, regionsOf(servers...))
	for _, body := range []string{`{"prompt":"hi"}`, `{"model":"chat","prompt":"hi"}`} {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost,
			"https://caller.example/openai/deployments/chat/completions?api-version=2024-10-21", strings.NewReader(body))
		require.NoError(t, err)
		resp, err := transportClient(client).Do(req)
		require.NoError(t, err)
		answer := readAll(t, resp)
		if !assert.Equal(t, http.StatusOK, resp.StatusCode, "%s: %s", body, answer) {
			continue
		}
		calls := servers[0].Calls()
		last := calls[len(calls)-1]
		assert.Equal(t, "completions", last.Operation, body)
		assert.Equal(t, "chat", last.Deployment, body)
	}
}

// TestTwoOpenAIOrganisationsOnOneBaseURL: a KindOpenAI region is "a second OpenAI organisation" (docs/sdks.md,
// Region.Kind): two organisations are two accounts behind one base URL, told apart by their keys. (Found in
// review: the duplicate check in validate.go took the endpoint alone for the account, and refused the second as
// "the same endpoint".)
func TestTwoOpenAIOrganisationsOnOneBaseURL(t *testing.T) {
	c, err := failover.New([]failover.Region{
		{Name: "org-a", Endpoint: "https://api.openai.com/v1", APIKey: "sk-org-a-0123456789", Kind: failover.KindOpenAI},
		{Name: "org-b", Endpoint: "https://api.openai.com/v1", APIKey: "sk-org-b-9876543210", Kind: failover.KindOpenAI, Priority: 1},
	})
	require.NoError(t, err)
	c.CloseIdleConnections()
}
