package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/aoai-failover/failover"
	"github.com/aoai-failover/failover/failovertest"
	"github.com/aoai-failover/failover/gateway"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/azure"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/responses"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// openai-go's Responses API through the failover client. A create (POST /responses) fails over as a chat
// completion does. What it stores, a response named by its id, lives only in the region that made it, as on Azure:
// a GET by id and a create that continues it (previous_response_id) must go to that region, whatever the order of
// the regions and however healthy the others are. The fakes refuse them anywhere else (404, 400
// previous_response_not_found), as the service does.

// responsesAPIVersion is an api-version at which a region's classic surface serves the Responses API
// (2025-03-01-preview or later). Azure refuses the Responses API at a GA version such as failover.DefaultAPIVersion,
// and so do the fakes; a classic region meant to serve it is configured with this one.
const responsesAPIVersion = "2025-04-01-preview"

// v1Region configures s as a region on its v1 surface ({endpoint}/openai/v1/responses, the deployment in the
// body's model, no dated api-version), with azureRegion's deployments.
func v1Region(s *failovertest.Server) failover.Region {
	r := azureRegion(s)
	r.Endpoint = s.V1URL
	return r
}

// classicResponsesRegion configures s as a classic-surface region (/openai/responses?api-version=…, the
// deployment in the body's model) at an api-version that serves the Responses API.
func classicResponsesRegion(s *failovertest.Server) failover.Region {
	r := azureRegion(s)
	r.APIVersion = responsesAPIVersion
	return r
}

// responsesSurface is one way a region is configured to serve the Responses API.
type responsesSurface struct {
	name   string
	v1     bool // the region is reached on its v1 surface
	region func(*failovertest.Server) failover.Region
}

// regions is the surface's region of each server, in order.
func (rs responsesSurface) regions(servers ...*failovertest.Server) []failover.Region {
	regions := make([]failover.Region, len(servers))
	for i, s := range servers {
		regions[i] = rs.region(s)
	}
	return regions
}

// responsesSurfaces are Azure's two surfaces for the Responses API.
var responsesSurfaces = []responsesSurface{
	{"v1", true, v1Region},
	{"classic", false, classicResponsesRegion},
}

// responseParams asks chatModel to say hello; previous, when not empty, continues from that stored response.
func responseParams(previous string) responses.ResponseNewParams {
	p := responses.ResponseNewParams{
		Model: chatModel,
		Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("Say hello.")},
	}
	if previous != "" {
		p.PreviousResponseID = openai.String(previous)
	}
	return p
}

// responseStream is what a streamed create gave the SDK's stream.
type responseStream struct {
	text      string             // the response.output_text.delta events' deltas, in order
	created   []string           // the id in each response.created event
	completed responses.Response // the response response.completed carried
}

// streamResponse reads a streamed create to its end through the SDK's stream. The Responses API sends no
// [DONE]: the stream is complete at response.completed, and the SDK's stream ends without error at the end of
// the body. openai-go hands an error event (event: error) or response.failed to the caller as an event, not as
// the stream's error, so they are errors here, as is a stream that ends without response.completed: a stream
// that broke off is not an answer.
func streamResponse(t *testing.T, client openai.Client, params responses.ResponseNewParams) (responseStream, error) {
	t.Helper()
	stream := client.Responses.NewStreaming(t.Context(), params)
	defer stream.Close()
	var out responseStream
	var text []byte
	completed := false
	for stream.Next() {
		ev := stream.Current()
		switch ev.Type {
		case "response.created":
			out.created = append(out.created, ev.Response.ID)
		case "response.output_text.delta":
			text = append(text, ev.Delta...)
		case "response.completed":
			out.completed, completed = ev.Response, true
		case "error", "response.failed":
			return out, fmt.Errorf("stream event %s: %s %s", ev.Type, ev.Code, ev.Message)
		}
	}
	out.text = string(text)
	if err := stream.Err(); err != nil {
		return out, err
	}
	if !completed {
		return out, errors.New("the stream ended without response.completed")
	}
	return out, nil
}

// assertCreateServed checks what region s saw of create c: a Responses API create on the surface's path, the model
// mapped to the region's deployment (in the body, on both surfaces), at the surface's api-version, streamed or not.
func assertCreateServed(t *testing.T, surface responsesSurface, s *failovertest.Server, c failovertest.Call, stream bool) {
	t.Helper()
	assert.Equal(t, "responses", c.Operation, "%s: a Responses API create", s.Name)
	assert.Equal(t, surface.v1, c.V1, "%s: reached on its %s surface", s.Name, surface.name)
	assert.Equal(t, chatDeployment(s.Name), c.Deployment, "%s: the model mapped to the region's deployment", s.Name)
	if surface.v1 {
		assert.Empty(t, c.APIVersion, "%s: no dated api-version on the v1 surface", s.Name)
	} else {
		assert.Equal(t, responsesAPIVersion, c.APIVersion, "%s: the region's api-version", s.Name)
	}
	assert.Equal(t, stream, c.Stream, "%s: streamed", s.Name)
}

// TestResponsesNewFailsOver: a create from plain openai-go is served by the second region when the first is
// throttled, on either surface, under the second region's deployment and with its key; the answer, and the stored
// response, are the second region's, and the SDK handed its HTTP client the request once.
func TestResponsesNewFailsOver(t *testing.T) {
	for _, surface := range responsesSurfaces {
		t.Run(surface.name, func(t *testing.T) {
			servers := startRegions(t, "eastus", "westus")
			servers[0].Script(failovertest.RateLimited(30 * time.Second))
			rt := &countingTransport{next: newFailover(t, surface.regions(servers...))}

			client := plainSDK(rt)
			resp, err := client.Responses.New(t.Context(), responseParams(""))
			require.NoError(t, err)
			assert.Equal(t, greeting(servers[1]), resp.OutputText(), "the second region wrote the answer")
			assert.Equal(t, []string{resp.ID}, servers[1].Responses(), "the second region made and stored it")
			assert.Empty(t, servers[0].Responses())
			assert.Equal(t, int64(1), rt.calls.Load(), "the SDK did not retry")

			assert.Equal(t, []int{http.StatusTooManyRequests}, statuses(servers[0]))
			require.Equal(t, []int{http.StatusOK}, statuses(servers[1]))
			for _, s := range servers {
				assertCreateServed(t, surface, s, s.Calls()[0], false)
				assertOnlyOwnKey(t, s)
			}
		})
	}
}

// TestResponsesNewStreamingFailsOver: a streamed create is served by the second region when the first answers 429,
// or starts a stream that fails (an error event) before its first delta. The SDK's stream reads the second
// region's events only (one response.created, its own), its deltas make the second region's text, and it ends at
// response.completed without error and without [DONE].
func TestResponsesNewStreamingFailsOver(t *testing.T) {
	firsts := []struct {
		name   string
		reply  failovertest.Reply
		status int // what the first region answered
	}{
		{"429", failovertest.RateLimited(30 * time.Second), http.StatusTooManyRequests},
		{"error before any delta", failovertest.Reply{StreamErrorAt: 1}, http.StatusOK},
	}
	for _, first := range firsts {
		for _, surface := range responsesSurfaces {
			t.Run(first.name+"/"+surface.name, func(t *testing.T) {
				servers := startRegions(t, "eastus", "westus")
				servers[0].Script(first.reply)
				rt := &countingTransport{next: newFailover(t, surface.regions(servers...))}

				got, err := streamResponse(t, plainSDK(rt), responseParams(""))
				require.NoError(t, err)
				assert.Equal(t, greeting(servers[1]), got.text, "the deltas are the second region's")
				assert.Equal(t, greeting(servers[1]), got.completed.OutputText())
				assert.Equal(t, []string{got.completed.ID}, got.created,
					"one response.created, for the response that completed: nothing of the first region's stream")
				assert.Equal(t, []string{got.completed.ID}, servers[1].Responses(), "the second region made and stored it")
				assert.Empty(t, servers[0].Responses(), "the first region's broken stream stored nothing")
				assert.Equal(t, int64(1), rt.calls.Load(), "the SDK did not retry")

				assert.Equal(t, []int{first.status}, statuses(servers[0]))
				require.Equal(t, []int{http.StatusOK}, statuses(servers[1]))
				for _, s := range servers {
					assertCreateServed(t, surface, s, s.Calls()[0], true)
					assertOnlyOwnKey(t, s)
				}
			})
		}
	}
}

// withoutRests are failover options under which a throttled region serves again at once: a 429 without
// Retry-After rests it for the backoff, here none, and quota steering, which would put it after regions that
// reported room, is off. A request that still passes such a region over does so for what it names (a stored
// response), not because the region rests.
func withoutRests() []failover.Option {
	return []failover.Option{
		failover.WithBackoff(func(int) time.Duration { return 0 }),
		failover.WithQuotaSteering(false),
	}
}

// requireServing checks that the client takes region name to be serving every model: no rest, no probe.
func requireServing(t *testing.T, fc *failover.Client, name string) {
	t.Helper()
	for _, h := range fc.Health() {
		if h.Region == name {
			require.Equal(t, failover.StateServing, h.State, "%s serves: %+v", name, h)
			require.Empty(t, h.Models, "no model of %s rests", name)
			return
		}
	}
	require.Failf(t, "no such region", "%s is not among the client's regions", name)
}

// madeInSecond makes a response through client while the first region is throttled (a 429 without Retry-After),
// so that the second region makes and stores it. It then checks the premise of the tests that use it: fc, built
// withoutRests, takes the first region to be serving again, so that only the response's id can keep a request
// away from it.
func madeInSecond(t *testing.T, client openai.Client, fc *failover.Client, servers []*failovertest.Server) *responses.Response {
	t.Helper()
	servers[0].Script(failovertest.RateLimited(0))
	created, err := client.Responses.New(t.Context(), responseParams(""))
	require.NoError(t, err)
	require.Equal(t, []int{http.StatusTooManyRequests}, statuses(servers[0]), "the first region was throttled")
	require.Equal(t, []string{created.ID}, servers[1].Responses(), "the second region made the response")
	requireServing(t, fc, servers[0].Name)
	return created
}

// assertOnlyOwnerAsked checks that, after the create, the second region alone was asked: the first region saw
// only the create's 429, and the second the create and then op on created's id, which it served.
func assertOnlyOwnerAsked(t *testing.T, servers []*failovertest.Server, op string, created *responses.Response) {
	t.Helper()
	assert.Len(t, servers[0].Calls(), 1, "the first region was asked nothing after the create")
	calls := servers[1].Calls()
	require.Len(t, calls, 2, "the second region was asked the create, then %s", op)
	assert.Equal(t, op, calls[1].Operation)
	assert.Equal(t, http.StatusOK, calls[1].Status)
	if op == "responses" {
		assert.Contains(t, string(calls[1].Body), created.ID, "the follow-up names the previous response")
	} else {
		assert.Equal(t, created.ID, calls[1].ResponseID)
	}
}

// assertFollowUp checks a follow-up's answer: the second region's, a new response continuing created, stored
// beside it.
func assertFollowUp(t *testing.T, servers []*failovertest.Server, created, follow *responses.Response) {
	t.Helper()
	assert.Equal(t, created.ID, follow.PreviousResponseID, "it continues the stored response")
	assert.NotEqual(t, created.ID, follow.ID)
	assert.Equal(t, greeting(servers[1]), follow.OutputText(), "the second region wrote the answer")
	assert.Equal(t, []string{created.ID, follow.ID}, servers[1].Responses())
	assert.Empty(t, servers[0].Responses())
}

// TestResponsesGetGoesToTheRegionThatMadeIt: Responses.Get of a response the second region made (the first was
// throttled then) goes to the second region alone, though the first is first in order and serving again; it
// answers the stored response.
func TestResponsesGetGoesToTheRegionThatMadeIt(t *testing.T) {
	for _, surface := range responsesSurfaces {
		t.Run(surface.name, func(t *testing.T) {
			servers := startRegions(t, "eastus", "westus")
			fc := newFailover(t, surface.regions(servers...), withoutRests()...)
			client := plainSDK(fc)
			created := madeInSecond(t, client, fc, servers)

			got, err := client.Responses.Get(t.Context(), created.ID, responses.ResponseGetParams{})
			require.NoError(t, err)
			assert.Equal(t, created.ID, got.ID)
			assert.Equal(t, greeting(servers[1]), got.OutputText())
			assertOnlyOwnerAsked(t, servers, "responses.get", created)
			assert.Equal(t, surface.v1, servers[1].Calls()[1].V1, "reached on its %s surface", surface.name)
			for _, s := range servers {
				assertOnlyOwnKey(t, s)
			}
		})
	}
}

// TestResponsesFollowUpGoesToTheRegionThatMadeIt: a create with previous_response_id naming a response the second
// region made goes to the second region alone, though the first is first in order, serving again and has the
// model; it succeeds there, under the second region's deployment.
func TestResponsesFollowUpGoesToTheRegionThatMadeIt(t *testing.T) {
	for _, surface := range responsesSurfaces {
		t.Run(surface.name, func(t *testing.T) {
			servers := startRegions(t, "eastus", "westus")
			fc := newFailover(t, surface.regions(servers...), withoutRests()...)
			client := plainSDK(fc)
			created := madeInSecond(t, client, fc, servers)

			follow, err := client.Responses.New(t.Context(), responseParams(created.ID))
			require.NoError(t, err)
			assertFollowUp(t, servers, created, follow)
			assertOnlyOwnerAsked(t, servers, "responses", created)
			assertCreateServed(t, surface, servers[1], servers[1].Calls()[1], false)
			for _, s := range servers {
				assertOnlyOwnKey(t, s)
			}
		})
	}
}

// TestAzureSDKResponsesGoToTheRegionThatMadeThem: from openai-go's azure package (/openai/responses… with the
// caller's api-version, api-key; an https logical endpoint, see logicalAzureEndpoint), a create fails over to the
// second region, and then a Get and a follow-up of that response go to the second region alone. A classic region
// configured at the GA default gets the caller's newer api-version, the one at which the Responses API is served;
// a v1 region gets none.
func TestAzureSDKResponsesGoToTheRegionThatMadeThem(t *testing.T) {
	surfaces := []responsesSurface{
		{"v1", true, v1Region},
		{"classic", false, azureRegion}, // at failover.DefaultAPIVersion, older than the caller's
	}
	for _, surface := range surfaces {
		for _, op := range []string{"get", "follow-up"} {
			t.Run(surface.name+"/"+op, func(t *testing.T) {
				servers := startRegions(t, "eastus", "westus")
				fc := newFailover(t, surface.regions(servers...), withoutRests()...)
				client := azureSDK(fc, callerAPIVersion)
				created := madeInSecond(t, client, fc, servers)

				if op == "get" {
					got, err := client.Responses.Get(t.Context(), created.ID, responses.ResponseGetParams{})
					require.NoError(t, err)
					assert.Equal(t, created.ID, got.ID)
					assertOnlyOwnerAsked(t, servers, "responses.get", created)
				} else {
					follow, err := client.Responses.New(t.Context(), responseParams(created.ID))
					require.NoError(t, err)
					assertFollowUp(t, servers, created, follow)
					assertOnlyOwnerAsked(t, servers, "responses", created)
					assert.Equal(t, chatDeployment("westus"), servers[1].Calls()[1].Deployment)
				}
				for _, s := range servers {
					for i, c := range s.Calls() {
						assert.Equal(t, surface.v1, c.V1, "%s call %d on its %s surface", s.Name, i, surface.name)
						if !surface.v1 {
							assert.Equal(t, callerAPIVersion, c.APIVersion, "%s call %d: the caller's newer api-version", s.Name, i)
						}
					}
					assertOnlyOwnKey(t, s)
				}
			})
		}
	}
}

// responsesGatewayClients are gatewayClients for the Responses API: the same three kinds of openai-go client, the
// azure one at an api-version that has the Responses API (gatewayClients' is GA, which Azure refuses for it).
var responsesGatewayClients = []struct {
	name string
	new  func(url string) openai.Client
}{
	{"openai", func(url string) openai.Client {
		return openai.NewClient(option.WithBaseURL(url+"/v1/"), option.WithAPIKey(gatewayKey))
	}},
	{"azure", func(url string) openai.Client {
		return openai.NewClient(azure.WithEndpoint(url, callerAPIVersion), azure.WithAPIKey(gatewayKey),
			azure.WithUnsafeAllowHTTP())
	}},
	{"azure v1", func(url string) openai.Client {
		return openai.NewClient(option.WithBaseURL(url+"/openai/v1/"), option.WithAPIKey(gatewayKey))
	}},
}

// TestGatewayResponsesFollowUp: through the gateway, from each kind of openai-go client, a create fails over to
// the second region, and a follow-up with previous_response_id then goes to the second region alone, though the
// first is serving again; each reaches the gateway once, and no gateway key reaches a region.
func TestGatewayResponsesFollowUp(t *testing.T) {
	for _, gc := range responsesGatewayClients {
		for _, surface := range responsesSurfaces {
			t.Run(gc.name+"/"+surface.name, func(t *testing.T) {
				servers := startRegions(t, "eastus", "westus")
				fc := newFailover(t, surface.regions(servers...), withoutRests()...)
				gw, err := gateway.New(fc, gateway.Config{Keys: []string{gatewayKey}})
				require.NoError(t, err)
				hits := &countingHandler{next: gw}
				srv := httptest.NewServer(hits)
				t.Cleanup(srv.Close)
				client := gc.new(srv.URL)

				created := madeInSecond(t, client, fc, servers)
				assert.Equal(t, greeting(servers[1]), created.OutputText())
				follow, err := client.Responses.New(t.Context(), responseParams(created.ID))
				require.NoError(t, err)
				assertFollowUp(t, servers, created, follow)
				assertOnlyOwnerAsked(t, servers, "responses", created)
				assert.Equal(t, int64(2), hits.calls.Load(), "the SDK did not retry")
				assertCreateServed(t, surface, servers[0], servers[0].Calls()[0], false)
				for _, c := range servers[1].Calls() {
					assertCreateServed(t, surface, servers[1], c, false)
				}
				for _, s := range servers {
					assertOnlyOwnKey(t, s, gatewayKey)
				}
			})
		}
	}
}

// BenchmarkResponsesNew measures what the failover client adds to one non-streaming openai-go Responses.New, as
// BenchmarkOpenAIGoChat does for chat: direct is openai-go straight to a fake region's v1 surface, failover the
// same request through the failover client configured with that one region on the same surface. paired makes one
// call of each per iteration in ABBA order (see pairs) and reports failover/direct.
//
// The requests store their responses (store defaults to true), as most callers' do, so the failover client learns
// each response's region as it would in use; the fake keeps every response, so memory grows with the iterations
// (a few MB at the benchtime below).
//
//	go test -run '^$' -bench ResponsesNew -benchtime 2000x -count 5
func BenchmarkResponsesNew(b *testing.B) {
	srv := failovertest.NewRegion("bench", failovertest.WithoutCallLog())
	defer srv.Close()
	params := responses.ResponseNewParams{
		Model:        chatModel,
		Instructions: openai.String("You are a terse assistant."),
		Input:        responses.ResponseNewParamsInputUnion{OfString: openai.String("Say hello in five words.")},
	}

	// direct gets a transport like the failover client's own (http.DefaultTransport's settings), so that only the
	// failover layer differs.
	transport := http.DefaultTransport.(*http.Transport).Clone()
	defer transport.CloseIdleConnections()
	direct := openai.NewClient(option.WithBaseURL(srv.V1URL+"/"), option.WithAPIKey(srv.Key),
		option.WithHTTPClient(&http.Client{Transport: transport}))

	fc, err := failover.New([]failover.Region{{Name: srv.Name, Endpoint: srv.V1URL, APIKey: srv.Key}})
	if err != nil {
		b.Fatal(err)
	}
	defer fc.Close()
	viaFailover := openai.NewClient(option.WithHTTPClient(&http.Client{Transport: fc}), option.WithAPIKey("unused"))

	create := func(client openai.Client) func(*testing.B) {
		return func(b *testing.B) {
			if _, err := client.Responses.New(context.Background(), params); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("paired", func(b *testing.B) {
		pairCalls(b, create(direct), create(viaFailover))
	})
}

// pairCalls is pairs for any call: one call of each per iteration, in the order ABBA (direct first on even
// iterations, failover first on odd ones), each timed, after one call of each that opens the connections. It
// reports each one's mean ns per call and their ratio, failover/direct.
func pairCalls(b *testing.B, direct, viaFailover func(*testing.B)) {
	direct(b)
	viaFailover(b)
	var spent [2]time.Duration
	calls := [2]func(*testing.B){direct, viaFailover}
	i := 0
	for b.Loop() {
		for k := range 2 {
			c := (i + k) % 2 // 0, 1 on even iterations; 1, 0 on odd ones
			start := time.Now()
			calls[c](b)
			spent[c] += time.Since(start)
		}
		i++
	}
	n := float64(b.N)
	b.ReportMetric(float64(spent[0].Nanoseconds())/n, "direct-ns/call")
	b.ReportMetric(float64(spent[1].Nanoseconds())/n, "failover-ns/call")
	b.ReportMetric(float64(spent[1])/float64(spent[0]), "failover/direct")
}
