package failover

import (
	"bytes"
	"encoding/json"
)

// When a chat stream that ends without "data: [DONE]" is complete anyway. OpenAI-compatible servers do not always
// send it, and a clean end is not a cut: the stream is whole when every choice the request asked for (n) has its
// finish_reason, the usage chunk has come if stream_options.include_usage asked for it, and the body ended on an
// event's end. A body that breaks, or ends inside an event, stays a cut.

// chatEnd is what a chat stream has said of its end so far.
type chatEnd struct {
	finished uint64       // the choices below 64 that have a finish_reason
	more     map[int]bool // those at 64 and above
	usage    bool         // a chunk carried the usage
	boundary bool         // the last line read ended an event
}

// see takes in a chunk's data. Only a chunk that may finish a choice or carry the usage is decoded: the others
// say "finish_reason":null for each of their choices, or nothing of either.
func (c *chatEnd) see(data []byte) {
	finishes := bytes.Count(data, []byte(`"finish_reason"`)) > bytes.Count(data, []byte(`"finish_reason":null`))
	usage := bytes.Contains(data, []byte(`"usage"`)) && !bytes.Contains(data, []byte(`"usage":null`))
	if !finishes && !usage {
		return
	}
	var chunk struct {
		Choices []struct {
			Index        int     `json:"index"`
			FinishReason *string `json:"finish_reason"`
		} `json:"choices"`
		Usage json.RawMessage `json:"usage"`
	}
	if json.Unmarshal(data, &chunk) != nil {
		return
	}
	for _, choice := range chunk.Choices {
		switch {
		case choice.FinishReason == nil || *choice.FinishReason == "" || choice.Index < 0:
		case choice.Index < 64:
			c.finished |= 1 << choice.Index
		default:
			if c.more == nil {
				c.more = make(map[int]bool)
			}
			c.more[choice.Index] = true
		}
	}
	c.usage = c.usage || len(chunk.Usage) > 0 && string(chunk.Usage) != "null"
}

// line notes whether a line read ends an event.
func (c *chatEnd) line(line []byte) {
	if len(line) > 0 {
		c.boundary = len(bytes.TrimSpace(line)) == 0
	}
}

// complete reports whether a stream that asked for n choices, and for the usage when usage is set, is whole.
func (c *chatEnd) complete(n int, usage bool) bool {
	if !c.boundary || usage && !c.usage || n < 1 {
		return false
	}
	for i := range n {
		if i < 64 && c.finished&(1<<i) == 0 || i >= 64 && !c.more[i] {
			return false
		}
	}
	return true
}

// streamExpects is what a chat request's body asks of its stream's end: how many choices, and whether the usage.
func (c *request) streamExpects() (n int, usage bool) {
	data := c.body.data
	if data == nil {
		var err error
		if data, err = readBody(c.body.get, c.body.length); err != nil {
			return 0, false // unknown: the stream cannot be called complete
		}
	}
	var req struct {
		N             *int `json:"n"`
		StreamOptions struct {
			IncludeUsage bool `json:"include_usage"`
		} `json:"stream_options"`
	}
	if json.Unmarshal(data, &req) != nil {
		return 0, false
	}
	n = 1
	if req.N != nil {
		n = *req.N
	}
	return n, req.StreamOptions.IncludeUsage
}
