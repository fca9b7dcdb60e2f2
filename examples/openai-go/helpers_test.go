package main

import (
	"context"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/aoai-failover/failover"
	"github.com/aoai-failover/failover/failovertest"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/azure"
	"github.com/openai/openai-go/v3/option"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

// TestMain fails the package if a goroutine outlives its tests: a stream, a hung attempt or a connection the SDK,
// the failover client or a fake left behind. It first clears the variables openai.NewClient reads, so that a
// developer's own OPENAI_BASE_URL or OPENAI_API_KEY cannot change what the tests send.
func TestMain(m *testing.M) {
	for _, name := range []string{"OPENAI_API_KEY", "OPENAI_ADMIN_KEY", "OPENAI_BASE_URL", "OPENAI_ORG_ID",
		"OPENAI_PROJECT_ID", "OPENAI_WEBHOOK_SECRET", "OPENAI_CUSTOM_HEADERS"} {
		_ = os.Unsetenv(name)
	}
	goleak.VerifyTestMain(m)
}

// callerKey is the key the SDK is given. The failover client drops it and sends each region's own, so it must
// never reach a region: the tests look for it in every header and body the fakes saw.
const callerKey = "caller-key-5e1d0c9a"

// The models the tests ask for. Each fake region has them under deployments of its own names (see azureRegion), so
// a region that is sent the model's name instead of its deployment answers DeploymentNotFound.
const (
	chatModel  = "gpt-4o"
	embedModel = "text-embedding-3-small"
)

// chatDeployment is region name's deployment of chatModel.
func chatDeployment(name string) string { return "chat-" + name }

// embedDeployment is region name's deployment of embedModel.
func embedDeployment(name string) string { return "embed-" + name }

// startRegions starts one fake Azure region per name, each with only its own deployments (chatDeployment and
// embedDeployment), closed when the test ends.
func startRegions(t testing.TB, names ...string) []*failovertest.Server {
	t.Helper()
	servers := make([]*failovertest.Server, len(names))
	for i, name := range names {
		servers[i] = failovertest.NewRegion(name, failovertest.WithDeployments(chatDeployment(name), embedDeployment(name)))
		t.Cleanup(servers[i].Close)
	}
	return servers
}

// azureRegion configures s as a classic-surface region that declares its deployments, so that the client maps
// each model to the region's deployment and sends no other model there.
func azureRegion(s *failovertest.Server) failover.Region {
	return failover.Region{Name: s.Name, Endpoint: s.URL, APIKey: s.Key, Deployments: map[string]string{
		chatModel: chatDeployment(s.Name), embedModel: embedDeployment(s.Name)}}
}

// azureRegions is azureRegion of each server, in order.
func azureRegions(servers ...*failovertest.Server) []failover.Region {
	regions := make([]failover.Region, len(servers))
	for i, s := range servers {
		regions[i] = azureRegion(s)
	}
	return regions
}

// newFailover builds a failover client whose idle connections are closed when the test ends (goleak would
// otherwise see their goroutines).
func newFailover(t testing.TB, regions []failover.Region, opts ...failover.Option) *failover.Client {
	t.Helper()
	fc, err := failover.New(regions, opts...)
	require.NoError(t, err)
	t.Cleanup(fc.CloseIdleConnections)
	return fc
}

// plainSDK is openai-go as a user of the OpenAI API builds it, sending through rt (the failover client, or a
// counter around it). The base URL is left at the SDK's default, https://api.openai.com/v1: the failover client
// re-addresses every request, so it is never contacted.
func plainSDK(rt http.RoundTripper, opts ...option.RequestOption) openai.Client {
	return openai.NewClient(append([]option.RequestOption{
		option.WithHTTPClient(&http.Client{Transport: rt}),
		option.WithAPIKey(callerKey),
	}, opts...)...)
}

// logicalAzureEndpoint is the endpoint the azure package is given in front of a failover client. It must be
// https: the azure package sends a plaintext loopback endpoint (http://127.0.0.1:…, with WithUnsafeAllowHTTP)
// straight to that address on a transport of its own, past the custom RoundTripper, so the failover client would
// never see the request (TestAzurePackageBypassesTheRoundTripperOnPlaintextLoopback). The host does not matter:
// the failover client re-addresses every request, and .invalid can never resolve should something else send it.
const logicalAzureEndpoint = "https://failover.invalid"

// azureSDK is openai-go's azure package as a user of Azure OpenAI builds it, with the caller's api-version,
// sending through rt.
func azureSDK(rt http.RoundTripper, apiVersion string, opts ...option.RequestOption) openai.Client {
	return openai.NewClient(append([]option.RequestOption{
		azure.WithEndpoint(logicalAzureEndpoint, apiVersion),
		azure.WithAPIKey(callerKey),
		option.WithHTTPClient(&http.Client{Transport: rt}),
	}, opts...)...)
}

// operation is one of the calls the failover client routes, made through an SDK client. It returns what the
// answer says, so a test can tell which region wrote it: the text of a completion, or the length of an
// embedding.
type operation struct {
	name      string
	model     string // the model it asks for
	operation string // the operation a region sees: Call.Operation
	call      func(t *testing.T, ctx context.Context, client openai.Client) (answer string, err error)
}

// operations are the calls the failover client routes: chat completions, streamed chat completions, legacy
// completions and embeddings.
var operations = []operation{
	{"chat", chatModel, "chat/completions", chat},
	{"stream", chatModel, "chat/completions", streamChat},
	{"completions", chatModel, "completions", complete},
	{"embeddings", embedModel, "embeddings", embed},
}

// chatParams asks chatModel to say hello.
func chatParams() openai.ChatCompletionNewParams {
	return openai.ChatCompletionNewParams{
		Model:    chatModel,
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Say hello.")},
	}
}

// chat makes one chat completion and returns its text.
func chat(_ *testing.T, ctx context.Context, client openai.Client) (string, error) {
	resp, err := client.Chat.Completions.New(ctx, chatParams())
	if err != nil {
		return "", err
	}
	if len(resp.Choices) == 0 {
		return "", nil
	}
	return resp.Choices[0].Message.Content, nil
}

// streamChat streams one chat completion to its end and returns its text. The stream's error, if any, is the
// error: one that broke off is not an answer.
func streamChat(_ *testing.T, ctx context.Context, client openai.Client) (string, error) {
	stream := client.Chat.Completions.NewStreaming(ctx, chatParams())
	defer stream.Close()
	var text strings.Builder
	for stream.Next() {
		for _, c := range stream.Current().Choices {
			text.WriteString(c.Delta.Content)
		}
	}
	return text.String(), stream.Err()
}

// complete makes one legacy completion and returns its text.
func complete(_ *testing.T, ctx context.Context, client openai.Client) (string, error) {
	resp, err := client.Completions.New(ctx, openai.CompletionNewParams{
		Model:  chatModel,
		Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String("Say hello.")},
	})
	if err != nil {
		return "", err
	}
	if len(resp.Choices) == 0 {
		return "", nil
	}
	return resp.Choices[0].Text, nil
}

// embed embeds one input and returns the vector's length as its answer.
func embed(t *testing.T, ctx context.Context, client openai.Client) (string, error) {
	resp, err := client.Embeddings.New(ctx, openai.EmbeddingNewParams{
		Model: embedModel,
		Input: openai.EmbeddingNewParamsInputUnion{OfArrayOfStrings: []string{"hello"}},
	})
	if err != nil {
		return "", err
	}
	require.Len(t, resp.Data, 1)
	if len(resp.Data[0].Embedding) == 0 {
		return "", nil
	}
	return "embedding", nil
}

// greeting is what a fake region answers by default: the tests check which region wrote an answer by it.
func greeting(s *failovertest.Server) string { return "Hello from " + s.Name + "." }

// deployment is the deployment region name has of op's model.
func (op operation) deployment(name string) string {
	if op.model == embedModel {
		return embedDeployment(name)
	}
	return chatDeployment(name)
}

// wantAnswer is the answer op gets from region s.
func wantAnswer(op operation, s *failovertest.Server) string {
	if op.name == "embeddings" {
		return "embedding"
	}
	return greeting(s)
}

// countingTransport counts the requests an SDK hands its HTTP client, so a test can tell the SDK's own retries
// (more than one) from the failover client's attempts (which the fakes count).
type countingTransport struct {
	next  http.RoundTripper
	calls atomic.Int64
}

// RoundTrip counts req and passes it on.
func (c *countingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	c.calls.Add(1)
	return c.next.RoundTrip(req)
}

// countingHandler counts the requests a handler (the gateway) receives.
type countingHandler struct {
	next  http.Handler
	calls atomic.Int64
}

// ServeHTTP counts r and passes it on.
func (c *countingHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c.calls.Add(1)
	c.next.ServeHTTP(w, r)
}

// assertOnlyOwnKey checks that every request s saw carried s's own credentials and nothing of the caller's (or
// of any other secret in notSent), in any header or in the body.
func assertOnlyOwnKey(t *testing.T, s *failovertest.Server, notSent ...string) {
	t.Helper()
	for i, c := range s.Calls() {
		assert.True(t, c.Authorized, "%s call %d carried the region's own credentials", s.Name, i)
		for _, secret := range append([]string{callerKey}, notSent...) {
			assert.NotContains(t, string(c.Body), secret, "%s call %d body", s.Name, i)
			for k, vs := range c.Header {
				for _, v := range vs {
					assert.NotContains(t, v, secret, "%s call %d header %s", s.Name, i, k)
				}
			}
		}
	}
}

// statuses is the status each request to s was answered with, in order.
func statuses(s *failovertest.Server) []int {
	var out []int
	for _, c := range s.Calls() {
		out = append(out, c.Status)
	}
	return out
}
