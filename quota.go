package failover

import (
	"bytes"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// quota is what a backend's answers said of one deployment's rate limit, and what this client sent it since.
type quota struct {
	requests, tokens meter
}

// quotaMark is what a ticket carries of the charges its attempt made, so that its answer can be placed.
type quotaMark struct {
	cost             float64   // the request's estimated tokens; 0 when nothing was charged
	requests, tokens float64   // the meters' marks
	at               time.Time // when the request was sent
}

// quotaAt returns model's quota, up to now, creating it when create is set; nil otherwise. The caller holds h.mu.
func (h *health) quotaAt(model string, now time.Time, create bool) *quota {
	q := h.quotas[model]
	if q != nil {
		q.requests.age(now)
		q.tokens.age(now)
		return q
	}
	if !create {
		return nil
	}
	if len(h.quotas) >= maxTrackedModels {
		// Model names come from requests: make room by dropping the quotas that know nothing any more.
		for m, old := range h.quotas {
			if old.requests.age(now); !old.requests.known {
				if old.tokens.age(now); !old.tokens.known && old.requests.idle(now) && old.tokens.idle(now) {
					delete(h.quotas, m)
				}
			}
		}
		if len(h.quotas) >= maxTrackedModels {
			return nil
		}
	}
	if h.quotas == nil {
		h.quotas = make(map[string]*quota)
	}
	q = &quota{}
	h.quotas[model] = q
	return q
}

// charge counts a request of cost tokens for model as sent now.
func (h *health) charge(model string, cost float64, now time.Time) quotaMark {
	h.mu.Lock()
	defer h.mu.Unlock()
	q := h.quotaAt(model, now, true)
	if q == nil {
		return quotaMark{}
	}
	return quotaMark{cost: cost, requests: q.requests.charge(1, now), tokens: q.tokens.charge(cost, now), at: now}
}

// The rate-limit headers Azure OpenAI sends with its answers (429s too).
const (
	headerRemainingRequests = "X-Ratelimit-Remaining-Requests"
	headerRemainingTokens   = "X-Ratelimit-Remaining-Tokens"
	headerLimitRequests     = "X-Ratelimit-Limit-Requests"
	headerLimitTokens       = "X-Ratelimit-Limit-Tokens"
)

// heard takes in what an answer to a request charged with mark says of model's rate limit. A 429 says what is
// left without the request, which it refused, and its Retry-After (retry; 0 without one) when there will be room
// for it.
func (h *health) heard(model string, status int, header http.Header, mark quotaMark, retry time.Duration, now time.Time) {
	leftRequests, okRequests := headerNumber(header, headerRemainingRequests)
	leftTokens, okTokens := headerNumber(header, headerRemainingTokens)
	if !okRequests && !okTokens || mark.cost == 0 {
		return
	}
	limitRequests, _ := headerNumber(header, headerLimitRequests)
	limitTokens, _ := headerNumber(header, headerLimitTokens)
	refused := status == http.StatusTooManyRequests
	requests, tokens := 1.0, mark.cost
	if refused {
		requests, tokens = 0, 0
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	q := h.quotaAt(model, now, true)
	if q == nil {
		return
	}
	if refused { // first: the answer's count is without it
		q.requests.uncount(1, mark.requests, mark.at)
		q.tokens.uncount(mark.cost, mark.tokens, mark.at)
	}
	if okRequests {
		q.requests.heard(leftRequests, limitRequests, requests, mark.requests, mark.at)
	}
	if okTokens {
		q.tokens.heard(leftTokens, limitTokens, tokens, mark.tokens, mark.at)
	}
	if refused && retry > 0 {
		// The deployment's own word on when the request fits stands against the meters' guess.
		q.requests.promise(1, now.Add(retry))
		q.tokens.promise(mark.cost, now.Add(retry))
	}
}

// uncount takes back a request's charge: it was never sent.
func (h *health) uncount(model string, mark quotaMark) {
	if mark.cost == 0 {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if q := h.quotas[model]; q != nil {
		q.requests.uncount(1, mark.requests, mark.at)
		q.tokens.uncount(mark.cost, mark.tokens, mark.at)
	}
}

// headerNumber reads a non-negative whole number, below 2^53, from header name; 0 and false when there is none.
func headerNumber(header http.Header, name string) (float64, bool) {
	v := header[name] // the names above are canonical
	if len(v) == 0 {
		return 0, false
	}
	n, err := strconv.ParseUint(v[0], 10, 53)
	if err != nil {
		return 0, false
	}
	return float64(n), true
}

// roomFor reports how long until model has room for a request of cost tokens on this backend, as far as its
// answers said: 0 when it has room now, or when nothing is known. A rest counts as no room until it ends.
func (h *health) roomFor(model string, cost float64, now time.Time) time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	var d time.Duration
	for _, r := range [...]*rest{h.region, h.models[model]} {
		switch r.state(now) {
		case StateResting, StateMissing:
			d = max(d, r.until.Sub(now))
		case StateProbing:
			d = max(d, probePoll)
		}
	}
	if q := h.quotaAt(model, now, false); q != nil {
		d = max(d, q.requests.shortBy(1, now), q.tokens.shortBy(cost, now))
	}
	return d
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

// scanBuffers recycles the copies of request bodies read to estimate their tokens.
var scanBuffers = sync.Pool{New: func() any { return new(tail) }}

// readBodyBytes calls f with the bytes of a request body: in place when they are in memory, else read through
// its GetBody into a pooled buffer, which f must not keep. Of a body that is only known by its GetBody and is
// larger than maxScanned, f gets the last maxScanned bytes, where go-openai writes max_tokens (after the messages),
// and the body is not held whole a second time. It reports false when the body could not be read.
func readBodyBytes(body requestBody, f func(data []byte)) bool {
	if body.data != nil {
		f(body.data)
		return true
	}
	rc, err := body.get()
	if err != nil {
		return false
	}
	defer rc.Close()
	t := scanBuffers.Get().(*tail)
	defer scanBuffers.Put(t)
	t.data = t.data[:0]
	if _, err := io.Copy(t, rc); err != nil { // a bytes.Reader (go-openai's) writes itself in one piece
		return false
	}
	f(t.data)
	return true
}

// maxScanned is the most of a request body that is read to estimate its tokens (see readBodyBytes).
const maxScanned = 64 << 10

// tail keeps the last maxScanned bytes written to it.
type tail struct{ data []byte }

func (t *tail) Write(p []byte) (int, error) {
	if len(p) >= maxScanned {
		t.data = append(t.data[:0], p[len(p)-maxScanned:]...)
		return len(p), nil
	}
	if over := len(t.data) + len(p) - maxScanned; over > 0 {
		t.data = t.data[:copy(t.data, t.data[over:])]
	}
	t.data = append(t.data, p...)
	return len(p), nil
}
