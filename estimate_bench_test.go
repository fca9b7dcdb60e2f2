package failover

import (
	"encoding/json"
	"strings"
	"testing"

	openai "github.com/sashabaranov/go-openai"
)

// BenchmarkEstimateTokens measures what steering adds to a request before it is sent: reading a go-openai chat
// body of about 2 KB through its GetBody and scanning it for max_tokens.
func BenchmarkEstimateTokens(b *testing.B) {
	data, err := json.Marshal(openai.ChatCompletionRequest{Model: "gpt-4o", MaxCompletionTokens: 300, Messages: []openai.ChatCompletionMessage{
		{Role: openai.ChatMessageRoleSystem, Content: "You are a terse assistant."},
		{Role: openai.ChatMessageRoleUser, Content: strings.Repeat("tell me more about quotas ", 80)},
	}})
	if err != nil {
		b.Fatal(err)
	}
	body := bytesBody(data)
	body.data = nil // as go-openai's: only its GetBody has the bytes
	c := call{request: request{e: &engine{}, body: body}}
	b.ReportAllocs()
	for b.Loop() {
		shape(&c, true)
	}
	if c.cost != float64((len(data)+3)/4+300) {
		b.Fatalf("cost %v", c.cost)
	}
}
