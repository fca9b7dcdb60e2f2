package failover

import "bytes"

// shape reads what the request's body says for the attempt limits, hedging's delays and steering: whether it
// asks for a stream, and, when costed (steering or hedging), its estimated tokens. A body that cannot be read is
// counted by its length; the attempts will fail on it anyway.
func shape(c *call, costed bool) {
	if !readBodyBytes(c.body, func(head, data []byte) {
		if costed {
			c.cost = estimateOf(data, c.body.length)
		}
		c.stream = topLevelTrue(data, "stream") || head != nil && jsonTrue(head, `"stream"`)
	}) {
		c.cost = float64(c.body.length+3) / 4
	}
}

// estimateTokens is what a request is likely to count against a tokens-per-minute limit, as Azure estimates it
// when the request arrives: its prompt plus the most it may generate. The prompt is taken as the body's length in
// bytes over 4 (about 4 bytes a token for English; the JSON around the text makes it an overestimate), and the
// most it may generate as max_tokens, else max_completion_tokens, times n. A request that sets neither counts
// its prompt alone, as the fake regions of failovertest count it.
func estimateTokens(body []byte) float64 { return estimateOf(body, int64(len(body))) }

// estimateOf is estimateTokens of a body of length bytes of which data is all, or the end.
func estimateOf(data []byte, length int64) float64 {
	prompt := (length + 3) / 4
	body := data
	completion := jsonInt(body, `"max_tokens"`)
	if completion == 0 {
		completion = jsonInt(body, `"max_completion_tokens"`)
	}
	if n := jsonInt(body, `"n"`); n > 1 {
		completion *= n
	}
	return float64(prompt + int64(completion))
}

// jsonTrue reports whether a JSON body has a member named key (quoted) whose value is true; see jsonInt.
func jsonTrue(body []byte, key string) bool {
	for rest := body; ; {
		value, found := memberValue(rest, key)
		if !found {
			return false
		}
		if bytes.HasPrefix(value, []byte("true")) {
			return true
		}
		rest = value
	}
}

// memberValue finds the next member named key (quoted) in body, and returns its value and what follows.
func memberValue(body []byte, key string) ([]byte, bool) {
	// Quotes are few in a request's text, so stepping from one to the next is faster than bytes.Index, which
	// falls back to comparing at every byte once a key's first bytes have matched a few times.
	for rest := body; ; {
		i := bytes.IndexByte(rest, '"')
		if i < 0 {
			return nil, false
		}
		rest = rest[i:]
		if !bytes.HasPrefix(rest, []byte(key)) {
			rest = rest[1:]
			continue
		}
		rest = skipSpace(rest[len(key):])
		if len(rest) > 0 && rest[0] == ':' {
			return skipSpace(rest[1:]), true
		}
	}
}

// skipSpace is data after its leading JSON whitespace.
func skipSpace(data []byte) []byte {
	for len(data) > 0 && (data[0] == ' ' || data[0] == '\t' || data[0] == '\r' || data[0] == '\n') {
		data = data[1:]
	}
	return data
}

// maxJSONInt caps the numbers jsonInt reads.
const maxJSONInt = 1e9

// jsonInt finds the first member named key (quoted) in a JSON body whose value is a whole number, and returns it;
// 0 when there is none. In JSON's text, a quoted key followed by a colon cannot be inside a string (its quotes
// would be escaped), so the match is a member, though perhaps of a nested object.
func jsonInt(body []byte, key string) int {
	for rest := body; ; {
		var found bool
		if rest, found = memberValue(rest, key); !found {
			return 0
		}
		n, digits := 0, 0
		for ; digits < len(rest) && '0' <= rest[digits] && rest[digits] <= '9'; digits++ {
			n = min(n*10+int(rest[digits]-'0'), maxJSONInt) // no request is that large: a cap, not an overflow
		}
		if digits > 0 {
			return n
		}
	}
}

// latencyKind is what the request's latencies are kept by, as far as its body says.
func (c *request) latencyKind() latencyKind { return latencyKind{model: c.model, stream: c.stream} }
