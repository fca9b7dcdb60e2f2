package failover_test

import (
	"net/http"
	"testing"

	"github.com/aoai-failover/failover"
	"github.com/aoai-failover/failover/storetest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestReplicasShareWhereResponsesAre: two clients sharing a Store (two gateway replicas, say): what one learns of
// where a response was made, the other uses, so its follow-up and GET go straight there, asking no other region.
func TestReplicasShareWhereResponsesAre(t *testing.T) {
	servers := startRegions(t, []string{"eastus", "westus"})
	east, west := servers[0], servers[1]
	store := new(storetest.Memory)
	maker := newClient(t, []failover.Region{regionsOf(servers...)[1]}, failover.WithStore(store))
	id := responseID(t, responsesCall(t, maker, http.MethodPost, "/v1/responses", `{"model":"gpt-4o","input":"hi"}`))

	// The same region under the same name and endpoint is the same backend in the Store, whatever else the
	// other client has.
	other := newClient(t, regionsOf(servers...), failover.WithStore(store))
	follow := responsesCall(t, other, http.MethodPost, "/v1/responses",
		`{"model":"gpt-4o","input":"more","previous_response_id":"`+id+`"}`)
	responseID(t, follow)
	got := responsesCall(t, other, http.MethodGet, "/v1/responses/"+id, "")
	assert.Equal(t, id, responseID(t, got))
	assert.Empty(t, east.Calls(), "the store said where the response is: no search")
	assert.Equal(t, []string{"responses", "responses", "responses.get"}, operations(west))
}

// TestOwnersWithoutAStoreThatSharesThem: a Store that does not implement OwnerStore still works: the second
// client finds the response by asking the regions in order.
func TestOwnersWithoutAStoreThatSharesThem(t *testing.T) {
	servers := startRegions(t, []string{"eastus", "westus"})
	east := servers[0]
	store := struct{ failover.Store }{new(storetest.Memory)} // its Store methods alone
	maker := newClient(t, []failover.Region{regionsOf(servers...)[1]}, failover.WithStore(store))
	id := responseID(t, responsesCall(t, maker, http.MethodPost, "/v1/responses", `{"model":"gpt-4o","input":"hi"}`))

	other := newClient(t, regionsOf(servers...), failover.WithStore(store))
	got := responsesCall(t, other, http.MethodGet, "/v1/responses/"+id, "")
	require.Equal(t, id, responseID(t, got))
	assert.Equal(t, []string{"responses.get"}, operations(east), "sought: eastus said 404 first")
}
