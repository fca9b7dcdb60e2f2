package failovertest_test

import openai "github.com/sashabaranov/go-openai"

// chat is a chat completion request for the gpt-4o deployment.
func chat() openai.ChatCompletionRequest {
	return openai.ChatCompletionRequest{Model: "gpt-4o", Messages: []openai.ChatCompletionMessage{{Role: "user", Content: "Hi there"}}}
}
