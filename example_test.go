package failover_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/aoai-failover/failover"
	"github.com/aoai-failover/failover/failovertest"
	openai "github.com/sashabaranov/go-openai"
)

// The first region is throttled, so the second one answers.
func Example() {
	eastus := failovertest.NewRegion("eastus")
	defer eastus.Close()
	eastus.SetDefault(failovertest.RateLimited(30 * time.Second))
	westus := failovertest.NewRegion("westus")
	defer westus.Close()

	client, err := failover.New([]failover.Region{
		{Name: "eastus", Endpoint: eastus.URL, APIKey: eastus.Key},
		{Name: "westus", Endpoint: westus.URL, APIKey: westus.Key},
	}, failover.WithModel("gpt-4o"))
	if err != nil {
		log.Fatal(err)
	}
	defer client.CloseIdleConnections()

	reply, err := client.ChatCompletion(context.Background(), []openai.ChatCompletionMessage{
		{Role: openai.ChatMessageRoleUser, Content: "Say hello."},
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(reply)
	// Output: Hello from westus.
}

// NewFromEnv reads AZURE_OPENAI_ENDPOINT_1, AZURE_OPENAI_API_KEY_1, … from the environment and from .env.
func ExampleNewFromEnv() {
	client, err := failover.NewFromEnv(failover.WithAttemptTimeout(30 * time.Second))
	if err != nil {
		log.Fatal(err) // names the variable that is wrong, never a key
	}
	reply, err := client.ChatCompletion(context.Background(), []openai.ChatCompletionMessage{
		{Role: openai.ChatMessageRoleUser, Content: "Say hello."},
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(reply)
}

// A Trace in the context reports every attempt of the requests made with it.
func ExampleWithTrace() {
	eastus := failovertest.NewRegion("eastus")
	defer eastus.Close()
	eastus.Script(failovertest.Unavailable())
	westus := failovertest.NewRegion("westus")
	defer westus.Close()
	client, err := failover.New([]failover.Region{
		{Name: "eastus", Endpoint: eastus.URL, APIKey: eastus.Key},
		{Name: "westus", Endpoint: westus.URL, APIKey: westus.Key},
	}, failover.WithModel("gpt-4o"))
	if err != nil {
		log.Fatal(err)
	}
	defer client.CloseIdleConnections()

	ctx := failover.WithTrace(context.Background(), &failover.Trace{
		AttemptDone: func(a failover.Attempt) {
			fmt.Printf("%s answered %d: %s\n", a.Region, a.Status, a.Outcome)
		},
	})
	if _, err := client.ChatCompletion(ctx, []openai.ChatCompletionMessage{{Role: "user", Content: "Hi"}}); err != nil {
		log.Fatal(err)
	}
	// Output:
	// eastus answered 503: failed over
	// westus answered 200: served
}

// When no region can serve a request, the error matches ErrExhausted and lists every attempt; errors.As still
// reaches the service's own error.
func ExampleExhaustedError() {
	eastus := failovertest.NewRegion("eastus")
	defer eastus.Close()
	eastus.SetDefault(failovertest.RateLimited(time.Minute))
	client, err := failover.New([]failover.Region{{Name: "eastus", Endpoint: eastus.URL, APIKey: eastus.Key}},
		failover.WithModel("gpt-4o"))
	if err != nil {
		log.Fatal(err)
	}
	defer client.CloseIdleConnections()

	_, err = client.ChatCompletion(context.Background(), []openai.ChatCompletionMessage{{Role: "user", Content: "Hi"}})
	var exhausted *failover.ExhaustedError
	var apiErr *openai.APIError
	if errors.Is(err, failover.ErrExhausted) && errors.As(err, &exhausted) && errors.As(err, &apiErr) {
		fmt.Println(len(exhausted.Attempts), "attempt; last status", apiErr.HTTPStatusCode)
	}
	// Output: 1 attempt; last status 429
}

// The client is an HTTP doer: a plain go-openai client that sends through it gets failover for chat, streaming
// and embeddings, whatever base URL it was given.
func ExampleClient_Do() {
	eastus := failovertest.NewRegion("eastus")
	defer eastus.Close()
	eastus.Script(failovertest.RateLimited(time.Second))
	westus := failovertest.NewRegion("westus")
	defer westus.Close()
	client, err := failover.New([]failover.Region{
		{Name: "eastus", Endpoint: eastus.URL, APIKey: eastus.Key},
		{Name: "westus", Endpoint: westus.URL, APIKey: westus.Key},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer client.CloseIdleConnections()

	cfg := openai.DefaultConfig("") // no key: each region's own is sent
	cfg.HTTPClient = client
	api := openai.NewClientWithConfig(cfg)
	resp, err := api.CreateEmbeddings(context.Background(), openai.EmbeddingRequest{
		Model: openai.SmallEmbedding3, Input: []string{"hello", "world"},
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(len(resp.Data), "embeddings")
	// Output: 2 embeddings
}

// The Client is an http.RoundTripper: under any SDK's *http.Client, requests fail over across regions of every
// kind (here a classic Azure region, throttled, and a v1 one). When no region can serve, the SDK gets an answer it
// understands instead of a connection error: a status, Retry-After, and x-should-retry: false.
func ExampleClient_RoundTrip() {
	classic := failovertest.NewRegion("eastus")
	defer classic.Close()
	classic.Script(failovertest.RateLimited(30 * time.Second))
	v1 := failovertest.NewRegion("swedencentral")
	defer v1.Close()
	client, err := failover.New([]failover.Region{
		{Name: "eastus", Endpoint: classic.URL, APIKey: classic.Key},
		{Name: "swedencentral", Endpoint: v1.V1URL, APIKey: v1.Key}, // ends in /openai/v1: the v1 surface
	}, failover.WithMaxWait(0))
	if err != nil {
		log.Fatal(err)
	}
	defer client.CloseIdleConnections()
	hc := &http.Client{Transport: client} // what openai-go's option.WithHTTPClient, or any SDK, takes

	send := func() *http.Response {
		req, _ := http.NewRequest(http.MethodPost, "https://any-base-url.example/v1/chat/completions",
			strings.NewReader(`{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}`))
		resp, err := hc.Do(req)
		if err != nil {
			log.Fatal(err) // only when the request's context ends
		}
		resp.Body.Close()
		return resp
	}
	resp := send()
	fmt.Println(resp.StatusCode, resp.Header.Get("X-Ms-Region"))

	v1.SetDefault(failovertest.RateLimited(20 * time.Second))
	resp = send()
	fmt.Println(resp.StatusCode, resp.Header.Get("X-Should-Retry"), resp.Header.Get("Retry-After") != "")
	// Output:
	// 200 swedencentral
	// 429 false true
}

// ChatCompletionBatch runs many requests, a few at a time, and returns the results in order.
func ExampleClient_ChatCompletionBatch() {
	eastus := failovertest.NewRegion("eastus", failovertest.WithEcho())
	defer eastus.Close()
	client, err := failover.New([]failover.Region{{Name: "eastus", Endpoint: eastus.URL, APIKey: eastus.Key}},
		failover.WithModel("gpt-4o"))
	if err != nil {
		log.Fatal(err)
	}
	defer client.CloseIdleConnections()

	var conversations [][]openai.ChatCompletionMessage
	for _, q := range []string{"one", "two", "three"} {
		conversations = append(conversations, []openai.ChatCompletionMessage{{Role: "user", Content: q}})
	}
	for _, r := range client.ChatCompletionBatch(context.Background(), conversations, 2) {
		fmt.Println(r.Content, r.Err)
	}
	// Output:
	// one <nil>
	// two <nil>
	// three <nil>
}

// Health says which regions rest, until when and why, and which models each lacks.
func ExampleClient_Health() {
	eastus := failovertest.NewRegion("eastus")
	defer eastus.Close()
	eastus.Script(failovertest.RateLimited(30 * time.Second))
	westus := failovertest.NewRegion("westus")
	defer westus.Close()
	client, err := failover.New([]failover.Region{
		{Name: "eastus", Endpoint: eastus.URL, APIKey: eastus.Key},
		{Name: "westus", Endpoint: westus.URL, APIKey: westus.Key},
	}, failover.WithModel("gpt-4o"))
	if err != nil {
		log.Fatal(err)
	}
	defer client.CloseIdleConnections()

	for range 3 {
		if _, err := client.ChatCompletion(context.Background(), []openai.ChatCompletionMessage{{Role: "user", Content: "Hi"}}); err != nil {
			log.Fatal(err)
		}
	}
	fmt.Println("eastus was asked", eastus.Requests(), "time; westus", westus.Requests(), "times")
	for _, r := range client.Health() {
		fmt.Println(r.Region, r.State)
		for _, m := range r.Models {
			fmt.Printf("  %s %s for %s (%s)\n", m.Model, m.State, time.Until(m.Until).Round(10*time.Second), m.Reason)
		}
	}
	// Output:
	// eastus was asked 1 time; westus 3 times
	// eastus serving
	//   gpt-4o resting for 30s (429 rate limited)
	// westus serving
}

// A stream fails over unseen until its first content; after that, a break is an error, never a quiet end.
func ExampleClient_CreateChatCompletionStream() {
	eastus := failovertest.NewRegion("eastus")
	defer eastus.Close()
	eastus.Script(failovertest.StreamFailure(1)) // an error event before any content
	westus := failovertest.NewRegion("westus")
	defer westus.Close()
	westus.Script(failovertest.Reply{Content: "one two three", StreamCutAfter: 2})
	client, err := failover.New([]failover.Region{
		{Name: "eastus", Endpoint: eastus.URL, APIKey: eastus.Key},
		{Name: "westus", Endpoint: westus.URL, APIKey: westus.Key},
	}, failover.WithModel("gpt-4o"))
	if err != nil {
		log.Fatal(err)
	}
	defer client.CloseIdleConnections()

	stream, err := client.CreateChatCompletionStream(context.Background(), openai.ChatCompletionRequest{
		Messages: []openai.ChatCompletionMessage{{Role: "user", Content: "Count."}},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer stream.Close()
	fmt.Println("served by", stream.Region())
	for {
		chunk, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		var cut *failover.StreamCutError
		if errors.As(err, &cut) {
			fmt.Printf("cut off after %q\n", cut.Received)
			break
		}
		if err != nil {
			log.Fatal(err)
		}
		if len(chunk.Choices) > 0 && chunk.Choices[0].Delta.Content != "" {
			fmt.Printf("%q\n", chunk.Choices[0].Delta.Content)
		}
	}
	// Output:
	// served by westus
	// "one "
	// "two "
	// cut off after "one two "
}

// A region given an Entra ID credential sends a token instead of a key; key and token regions mix freely, and
// regions given the same credential share one token. Nothing is fetched until the first request.
func ExampleRegion_entra() {
	cred, err := azidentity.NewDefaultAzureCredential(nil) // managed identity on Azure, az login on a laptop
	if err != nil {
		log.Fatal(err)
	}
	regions := []failover.Region{
		{Name: "eastus", Endpoint: "https://my-eastus.openai.azure.com", Credential: cred},
		{Name: "swedencentral", Endpoint: "https://my-sweden.openai.azure.com", Credential: cred},
		{Name: "westus", Endpoint: "https://my-westus.openai.azure.com", APIKey: "a-westus-key"},
	}
	client, err := failover.New(regions, failover.WithModel("gpt-4o"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(client.Regions())
	fmt.Printf("%v\n", regions[0])
	fmt.Printf("%v\n", regions[2])
	// Output:
	// [eastus swedencentral westus]
	// {Name:eastus Endpoint:https://my-eastus.openai.azure.com APIKey: Credential:*azidentity.DefaultAzureCredential APIVersion: Deployments:[] Priority:0 Weight:0 Kind:azure}
	// {Name:westus Endpoint:https://my-westus.openai.azure.com APIKey:[REDACTED] Credential: APIVersion: Deployments:[] Priority:0 Weight:0 Kind:azure}
}

// Steering is on with two regions or more: once eastus's answers say it has less quota left than a request
// needs, the next request goes to westus without paying for a 429 first.
func ExampleWithQuotaSteering() {
	eastus := failovertest.NewRegion("eastus", failovertest.WithQuota(failovertest.Quota{TokensPerMinute: 40}))
	defer eastus.Close()
	westus := failovertest.NewRegion("westus")
	defer westus.Close()
	client, err := failover.New([]failover.Region{
		{Name: "eastus", Endpoint: eastus.URL, APIKey: eastus.Key},
		{Name: "westus", Endpoint: westus.URL, APIKey: westus.Key},
	}, failover.WithModel("gpt-4o"))
	if err != nil {
		log.Fatal(err)
	}
	defer client.CloseIdleConnections()

	for range 3 {
		reply, err := client.ChatCompletion(context.Background(), []openai.ChatCompletionMessage{
			{Role: openai.ChatMessageRoleUser, Content: "Tell me about the weather in Seattle today."},
		})
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(reply)
	}
	fmt.Println("429s from eastus:", eastus.Statuses()[429])
	// Output:
	// Hello from eastus.
	// Hello from westus.
	// Hello from westus.
	// 429s from eastus: 0
}

// With hedging, a request eastus has not answered within 100 ms goes to westus too, and the first answer wins.
func ExampleWithHedging() {
	eastus := failovertest.NewRegion("eastus")
	defer eastus.Close()
	eastus.SetDefault(failovertest.Reply{Delay: 5 * time.Second}) // slow today
	westus := failovertest.NewRegion("westus")
	defer westus.Close()
	client, err := failover.New([]failover.Region{
		{Name: "eastus", Endpoint: eastus.URL, APIKey: eastus.Key},
		{Name: "westus", Endpoint: westus.URL, APIKey: westus.Key},
	}, failover.WithModel("gpt-4o"), failover.WithHedging(failover.Hedging{Delay: 100 * time.Millisecond}))
	if err != nil {
		log.Fatal(err)
	}
	defer client.CloseIdleConnections()

	ctx := failover.WithTrace(context.Background(), &failover.Trace{AttemptDone: func(a failover.Attempt) {
		fmt.Println(a.Region, a.Outcome, "hedge:", a.Hedged)
	}})
	reply, err := client.ChatCompletion(ctx, []openai.ChatCompletionMessage{{Role: "user", Content: "Hi"}})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(reply)
	// Output:
	// eastus lost hedge: false
	// westus served hedge: true
	// Hello from westus.
}
