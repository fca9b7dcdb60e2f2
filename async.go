package failover

import (
	"context"
	"sync"
	"sync/atomic"

	openai "github.com/sashabaranov/go-openai"
)

// Result is the outcome of one chat completion made by ChatCompletionAsync or ChatCompletionBatch.
type Result struct {
	// Content is the text of the first choice; empty when Err is set.
	Content string
	// Response is the whole answer; the zero value when Err is set.
	Response openai.ChatCompletionResponse
	// Err is what ChatCompletion would have returned.
	Err error
}

// ChatCompletionAsync starts ChatCompletion in a goroutine and returns a channel that receives its one Result and
// is then closed. The channel is buffered: the goroutine ends when the request does, even if nobody reads the
// result. Cancel ctx to abandon the request.
func (c *Client) ChatCompletionAsync(ctx context.Context, messages []openai.ChatCompletionMessage) <-chan Result {
	results := make(chan Result, 1)
	go func() {
		defer close(results)
		results <- c.result(ctx, messages)
	}()
	return results
}

func (c *Client) result(ctx context.Context, messages []openai.ChatCompletionMessage) Result {
	resp, err := c.chatCompletion(ctx, messages)
	if err != nil {
		return Result{Err: err}
	}
	return Result{Content: resp.Choices[0].Message.Content, Response: resp}
}

// DefaultBatchConcurrency is how many requests ChatCompletionBatch runs at once when given concurrency < 1.
const DefaultBatchConcurrency = 8

// ChatCompletionBatch runs one ChatCompletion per conversation, at most concurrency at a time, and returns the
// results in the order of conversations once all are done. A failed conversation does not stop the others; when
// ctx ends, the conversations not yet sent fail at once with its error. It starts no more goroutines than
// concurrency and leaves none behind.
func (c *Client) ChatCompletionBatch(ctx context.Context, conversations [][]openai.ChatCompletionMessage, concurrency int) []Result {
	results := make([]Result, len(conversations))
	if concurrency < 1 {
		concurrency = DefaultBatchConcurrency
	}
	concurrency = min(concurrency, len(conversations))
	var next atomic.Int64
	var wg sync.WaitGroup
	for range concurrency {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= len(conversations) {
					return
				}
				results[i] = c.result(ctx, conversations[i])
			}
		})
	}
	wg.Wait()
	return results
}
