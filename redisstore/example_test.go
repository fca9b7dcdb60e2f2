package redisstore_test

import (
	"context"
	"fmt"
	"log"

	"github.com/aoai-failover/failover"
	"github.com/aoai-failover/failover/redisstore"
)

// Replicas that build their clients so share rests through the Redis at FAILOVER_REDIS_URL, when it is set.
func ExampleOpener() {
	client, err := failover.NewFromEnv(failover.WithStoreOpener(redisstore.Opener))
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	fmt.Println(client.Sharing())
}

// A Store opened from Go values is the caller's to close.
func ExampleOpen() {
	store, err := redisstore.Open("rediss://:access-key@myapp.redis.cache.windows.net:6380/0", "myapp")
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
	client, err := failover.New([]failover.Region{
		{Name: "eastus", Endpoint: "https://myapp-eastus.openai.azure.com", APIKey: "…"},
		{Name: "swedencentral", Endpoint: "https://myapp-sweden.openai.azure.com", APIKey: "…"},
	}, failover.WithStore(store), failover.WithModel("gpt-4o"))
	if err != nil {
		log.Fatal(err)
	}
	answer, err := client.ChatCompletion(context.Background(), nil)
	fmt.Println(answer, err)
}
