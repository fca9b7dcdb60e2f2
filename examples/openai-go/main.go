// Command openai-go shows the official OpenAI Go SDK, github.com/openai/openai-go/v3, failing over between Azure
// OpenAI regions. The failover client is an http.RoundTripper: given to the SDK as its HTTP client's transport, it
// sends each chat completion, completion and embedding the SDK makes to the first region that can serve it, with
// that region's endpoint, deployment, api-version and key, and answers the SDK with the region's answer, or with
// one error (429, 503, 404…) that tells the SDK not to retry when no region could serve.
//
// It needs real regions, configured as for failover.NewFromEnv (AZURE_OPENAI_ENDPOINT_N,
// AZURE_OPENAI_API_KEY_N, AZURE_OPENAI_DEPLOYMENTS_N…; see .env.example at the repository's root), in the
// process environment or in a .env file in the directory it runs from:
//
//	cd examples/openai-go && go run .
//
// Example in example_test.go is the same program against fake regions, the first one throttled, and runs with
// go test.
package main

import (
	"context"
	"fmt"
	"log"
	"net/http"

	"github.com/aoai-failover/failover"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
)

// main asks the configured regions for one chat completion, through openai-go, and prints the answer.
func main() {
	fc, err := failover.NewFromEnv() // the regions, from the environment and ./.env
	if err != nil {
		log.Fatal(err) // names the variable that is wrong, never a key
	}
	defer fc.Close()

	// The failover client replaces every request's base URL and key with each region's own, so the SDK needs
	// neither: its default base URL (https://api.openai.com/v1) is never contacted, and this key is never sent.
	// It is set only so that the SDK does not put the process's OPENAI_API_KEY, which it reads otherwise, in a
	// header the failover client then drops.
	client := openai.NewClient(option.WithHTTPClient(&http.Client{Transport: fc}), option.WithAPIKey("unused"))

	resp, err := client.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{
		Model:    "gpt-4o", // the model; AZURE_OPENAI_DEPLOYMENTS_N names each region's deployment of it
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Say hello.")},
	})
	if err != nil {
		log.Fatal(err) // an *openai.Error when no region could serve: its StatusCode says why
	}
	fmt.Println(resp.Choices[0].Message.Content)
}
