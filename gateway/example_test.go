package gateway_test

import (
	"context"
	"fmt"
	"log"
	"net/http/httptest"
	"time"

	"github.com/aoai-failover/failover"
	"github.com/aoai-failover/failover/failovertest"
	"github.com/aoai-failover/failover/gateway"
	openai "github.com/sashabaranov/go-openai"
)

// The gateway is an http.Handler: serve it from your own server (here an httptest one), and any OpenAI client
// reaches the regions behind it with a gateway key.
func ExampleNew() {
	eastus, westus := failovertest.NewRegion("eastus"), failovertest.NewRegion("westus")
	defer eastus.Close()
	defer westus.Close()
	eastus.Script(failovertest.RateLimited(30 * time.Second))

	client, err := failover.New([]failover.Region{
		{Name: "eastus", Endpoint: eastus.URL, APIKey: eastus.Key},
		{Name: "westus", Endpoint: westus.URL, APIKey: westus.Key},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer client.CloseIdleConnections()
	gw, err := gateway.New(client, gateway.Config{Keys: []string{"a-gateway-key"}})
	if err != nil {
		log.Fatal(err)
	}
	srv := httptest.NewServer(gw)
	defer srv.Close()

	// A caller that knows nothing of regions: the plain OpenAI API shape, with the gateway's key.
	cfg := openai.DefaultConfig("a-gateway-key")
	cfg.BaseURL = srv.URL + "/v1"
	resp, err := openai.NewClientWithConfig(cfg).CreateChatCompletion(context.Background(), openai.ChatCompletionRequest{
		Model:    "gpt-4o",
		Messages: []openai.ChatCompletionMessage{{Role: openai.ChatMessageRoleUser, Content: "Say hello."}},
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(resp.Choices[0].Message.Content)
	fmt.Println("served by", resp.Header().Get("X-Failover-Region"), "after", resp.Header().Get("X-Failover-Attempts"), "attempts")
	// Output:
	// Hello from westus.
	// served by westus after 2 attempts
}
