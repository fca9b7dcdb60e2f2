package failovertest

import (
	"encoding/json"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// Quota is a per-minute rate limit that a fake server started WithQuota enforces on each deployment, as Azure
// OpenAI does with the quota assigned to a deployment. The zero Quota limits nothing: a server given it behaves as
// one without WithQuota.
type Quota struct {
	// RequestsPerMinute is how many requests a deployment admits in any 60 seconds. 0 (or less): no limit on
	// requests.
	RequestsPerMinute int
	// TokensPerMinute is how many tokens the requests a deployment admits in any 60 seconds may add up to, each
	// request counted as RequestTokens estimates it. 0 (or less): no limit on tokens.
	TokensPerMinute int
}

// WithQuota makes the server enforce q on each deployment separately (each model, on a fake OpenAI API). A
// region's deployment has one quota whichever surface, classic or v1, a request reaches it by: it is the same
// deployment.
//
// Each deployment has a sliding window: the requests it admitted in the last 60 seconds, not a count that starts
// over on the minute. A request is admitted when the window, with the request added, holds no more than
// RequestsPerMinute requests and no more than TokensPerMinute tokens; admitted requests enter the window, refused
// ones do not. A refused request gets the answer of RateLimited(d), where d is how long until enough of the
// window's requests have left it to make room for this one (a minute when the request's tokens alone are over
// the limit, so that it will never fit); that answer also carries x-ratelimit-limit-requests and
// x-ratelimit-limit-tokens, the quota.
//
// Every answer the quota decides on, admitted or refused, streams included, carries
// x-ratelimit-remaining-requests and x-ratelimit-remaining-tokens: what is left in the window once it has taken
// this request in, or, for a refused one, what is left without it (possibly more than 0, but less than this
// request needs). These replace the fixed values a server without a quota sends, and only limits that are set
// have headers. A Reply's own Header still wins over them.
//
// The quota decides after the server's own checks and before the reply is chosen: requests that fail those
// checks (a wrong key, an unknown path, a dated api-version on the v1 surface, a body that is not JSON, an unknown
// deployment) are answered as without a quota and do not count, and a refused request neither uses up a scripted
// reply nor reaches the replier. Time is time.Now's, so in a testing/synctest bubble the window moves with the
// bubble's fake clock.
func WithQuota(q Quota) Option {
	return func(s *Server) {
		s.quota = nil
		if q.RequestsPerMinute > 0 || q.TokensPerMinute > 0 {
			s.quota = &quotaLimiter{quota: q, windows: make(map[string]*quotaWindow)}
		}
	}
}

// RequestTokens is how many tokens a fake server under a Quota charges for a request with this body: like Azure,
// which charges the most a request could use, it is the prompt's tokens plus the completion budget.
//
// The prompt's tokens are the bytes of text the request sends, divided by 4 and rounded up, plus 4 for each chat
// message. The text is the content of every message (a string, or the text of its parts), the prompt of a
// completion, the input of an embedding (a string or an array of strings; token arrays count nothing) and the input
// of a Responses API create (a string, or the content of its items). The completion budget is max_tokens, or when
// that is missing (or 0) max_completion_tokens, or else max_output_tokens, or 0; multiplied by n when n is more
// than 1. A body that is not JSON counts 0.
func RequestTokens(body []byte) int {
	var b requestBody
	if json.Unmarshal(body, &b) != nil {
		return 0
	}
	return b.tokens()
}

// tokens estimates the body's tokens as RequestTokens says.
func (b *requestBody) tokens() int {
	text := textLen(b.Prompt) + textLen(b.Input)
	for _, m := range b.Messages {
		text += contentLen(m.Content)
	}
	budget := intOf(b.MaxTokens)
	if budget <= 0 {
		budget = intOf(b.MaxCompletionTokens)
	}
	if budget <= 0 {
		budget = intOf(b.MaxOutputTokens)
	}
	if n := intOf(b.N); n > 1 {
		budget *= n
	}
	return (text+3)/4 + 4*len(b.Messages) + max(budget, 0)
}

// contentLen is the length of a message's text: its content as a string, or the text of its parts.
func contentLen(content any) int {
	switch c := content.(type) {
	case string:
		return len(c)
	case []any:
		n := 0
		for _, part := range c {
			if p, ok := part.(map[string]any); ok {
				if text, ok := p["text"].(string); ok {
					n += len(text)
				}
			}
		}
		return n
	}
	return 0
}

// textLen is the length of a prompt or an input: a string, or an array of strings or of Responses API items.
func textLen(raw json.RawMessage) int {
	var one string
	if json.Unmarshal(raw, &one) == nil {
		return len(one)
	}
	var many []any
	_ = json.Unmarshal(raw, &many)
	n := 0
	for _, m := range many {
		switch m := m.(type) {
		case string:
			n += len(m)
		case map[string]any: // an item of a Responses API input
			n += contentLen(m["content"])
		}
	}
	return n
}

// intOf reads a whole number; anything else counts 0.
func intOf(raw json.RawMessage) int {
	var n int
	_ = json.Unmarshal(raw, &n)
	return n
}

// quotaLimiter holds the windows of a server's deployments.
type quotaLimiter struct {
	quota Quota

	mu      sync.Mutex
	windows map[string]*quotaWindow // by deployment; a window that empties is dropped
}

// quotaWindow is what a deployment admitted in the last 60 seconds, oldest first.
type quotaWindow struct {
	entries []quotaEntry
	tokens  int // the entries' tokens, added up
}

type quotaEntry struct {
	at     time.Time
	tokens int
}

// take decides on a request of tokens for deployment: it admits the request into the window, or refuses it and
// says how long until it would fit. header holds the quota headers of the answer.
func (l *quotaLimiter) take(deployment string, tokens int) (admitted bool, retryAfter time.Duration, header http.Header) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	for name, w := range l.windows {
		w.prune(now)
		if len(w.entries) == 0 {
			delete(l.windows, name)
		}
	}
	w := l.windows[deployment]
	if w == nil {
		w = &quotaWindow{}
	}
	retryAfter = w.wait(l.quota, tokens, now)
	if admitted = retryAfter == 0; admitted {
		w.entries = append(w.entries, quotaEntry{at: now, tokens: tokens})
		w.tokens += tokens
		l.windows[deployment] = w
	}

	q, header := l.quota, http.Header{}
	if q.RequestsPerMinute > 0 {
		header.Set("X-Ratelimit-Remaining-Requests", strconv.Itoa(q.RequestsPerMinute-len(w.entries)))
		if !admitted {
			header.Set("X-Ratelimit-Limit-Requests", strconv.Itoa(q.RequestsPerMinute))
		}
	}
	if q.TokensPerMinute > 0 {
		header.Set("X-Ratelimit-Remaining-Tokens", strconv.Itoa(q.TokensPerMinute-w.tokens))
		if !admitted {
			header.Set("X-Ratelimit-Limit-Tokens", strconv.Itoa(q.TokensPerMinute))
		}
	}
	return admitted, retryAfter, header
}

// prune drops the entries that are 60 seconds old or more.
func (w *quotaWindow) prune(now time.Time) {
	i := 0
	for i < len(w.entries) && now.Sub(w.entries[i].at) >= time.Minute {
		w.tokens -= w.entries[i].tokens
		i++
	}
	w.entries = w.entries[i:]
}

// wait is how long until the window has room for a request of tokens under q: 0 when it has room now, a minute
// when the request is over the tokens limit by itself. The window is pruned as of now.
func (w *quotaWindow) wait(q Quota, tokens int, now time.Time) time.Duration {
	if q.TokensPerMinute > 0 && tokens > q.TokensPerMinute {
		return time.Minute
	}
	used, n := w.tokens, len(w.entries)
	for i := 0; i <= n; i++ { // drop the oldest entries until the request fits
		if (q.RequestsPerMinute <= 0 || n-i < q.RequestsPerMinute) && (q.TokensPerMinute <= 0 || used+tokens <= q.TokensPerMinute) {
			if i == 0 {
				return 0
			}
			return w.entries[i-1].at.Add(time.Minute).Sub(now)
		}
		if i < n {
			used -= w.entries[i].tokens
		}
	}
	return time.Minute // not reached: an empty window has room for a request within the tokens limit
}

// admit puts a request that passed the server's own checks to its deployment's quota. It answers a refused
// request itself, and leaves an admitted one to the script, the replier or the default. header holds the quota's
// headers for the answer: nil without a quota.
func (s *Server) admit(call Call, body requestBody) (reply Reply, header http.Header) {
	if s.quota == nil {
		return s.next(call), nil
	}
	deployment := call.Deployment
	if s.openai {
		deployment = call.Model
	}
	admitted, retryAfter, header := s.quota.take(deployment, body.tokens())
	if admitted {
		return s.next(call), header
	}
	reply = RateLimited(retryAfter)
	reply.Header.Del("X-Ratelimit-Remaining-Requests") // the quota's own figures stand instead of zeros
	reply.Header.Del("X-Ratelimit-Remaining-Tokens")
	return reply, header
}
