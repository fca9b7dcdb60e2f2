package main

import (
	"context"
	"fmt"
	"log"
	"net/http"
	"time"

	"github.com/aoai-failover/failover"
	"github.com/aoai-failover/failover/failovertest"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
)

// Example is main.go against two fake regions on this machine, the first one out of quota: the SDK's call is
// served by the second. Only the regions differ from main.go: given here as Go values rather than read from the
// environment.
func Example() {
	eastus, westus := failovertest.NewRegion("eastus"), failovertest.NewRegion("westus")
	defer eastus.Close()
	defer westus.Close()
	eastus.Script(failovertest.RateLimited(30 * time.Second)) // eastus answers 429: retry in 30 s

	fc, err := failover.New([]failover.Region{
		{Name: "eastus", Endpoint: eastus.URL, APIKey: eastus.Key},
		{Name: "westus", Endpoint: westus.URL, APIKey: westus.Key},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer fc.Close()

	client := openai.NewClient(option.WithHTTPClient(&http.Client{Transport: fc}), option.WithAPIKey("unused"))
	resp, err := client.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{
		Model:    "gpt-4o",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Say hello.")},
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(resp.Choices[0].Message.Content)
	fmt.Println("eastus answered", eastus.Calls()[0].Status, "then westus", westus.Calls()[0].Status)
	// Output:
	// Hello from westus.
	// eastus answered 429 then westus 200
}
