package failover

import (
	"net/http"
	"strconv"
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

// quotaBook is a backend's quotas by model. Model names come from requests: at most maxTrackedModels are kept.
type quotaBook map[string]*quota

// at returns model's quota, up to now, creating it when create is set; nil otherwise. The caller holds the
// backend's lock.
func (b *quotaBook) at(model string, now time.Time, create bool) *quota {
	q := (*b)[model]
	if q != nil {
		q.requests.age(now)
		q.tokens.age(now)
		return q
	}
	if !create {
		return nil
	}
	if full(*b, model) {
		// Make room by dropping the quotas that know nothing any more.
		for m, old := range *b {
			if old.requests.age(now); !old.requests.known {
				if old.tokens.age(now); !old.tokens.known && old.requests.idle(now) && old.tokens.idle(now) {
					delete(*b, m)
				}
			}
		}
	}
	return track(b, model)
}

// The rate-limit headers Azure OpenAI sends with its answers (429s too).
const (
	headerRemainingRequests = "X-Ratelimit-Remaining-Requests"
	headerRemainingTokens   = "X-Ratelimit-Remaining-Tokens"
	headerLimitRequests     = "X-Ratelimit-Limit-Requests"
	headerLimitTokens       = "X-Ratelimit-Limit-Tokens"
)

// limits is what an answer's rate-limit headers say: what is left of each limit, and the limits when sent.
type limits struct {
	leftRequests, leftTokens   float64
	okRequests, okTokens       bool // the answer said what is left of the limit
	limitRequests, limitTokens float64
}

// limitsOf reads an answer's rate-limit headers; false when it says nothing of what is left.
func limitsOf(header http.Header) (limits, bool) {
	var l limits
	l.leftRequests, l.okRequests = headerNumber(header, headerRemainingRequests)
	l.leftTokens, l.okTokens = headerNumber(header, headerRemainingTokens)
	if !l.okRequests && !l.okTokens {
		return l, false
	}
	l.limitRequests, _ = headerNumber(header, headerLimitRequests)
	l.limitTokens, _ = headerNumber(header, headerLimitTokens)
	return l, true
}

// charge counts a request of cost tokens as sent now.
func (q *quota) charge(cost float64, now time.Time) quotaMark {
	return quotaMark{cost: cost, requests: q.requests.charge(1, now), tokens: q.tokens.charge(cost, now), at: now}
}

// heard takes in what an answer to a request charged with mark said (l). A 429 (refused) says what is left
// without the request, which it refused, and its Retry-After (retry; 0 without one) when there will be room for
// it.
func (q *quota) heard(l limits, refused bool, mark quotaMark, retry time.Duration, now time.Time) {
	requests, tokens := 1.0, mark.cost
	if refused {
		requests, tokens = 0, 0
		q.uncount(mark) // first: the answer's count is without it
	}
	if l.okRequests {
		q.requests.heard(l.leftRequests, l.limitRequests, requests, mark.requests, mark.at)
	}
	if l.okTokens {
		q.tokens.heard(l.leftTokens, l.limitTokens, tokens, mark.tokens, mark.at)
	}
	if refused && retry > 0 {
		// The deployment's own word on when the request fits stands against the meters' guess.
		q.requests.promise(1, now.Add(retry))
		q.tokens.promise(mark.cost, now.Add(retry))
	}
}

// uncount takes back a request's charge: the deployment never counted it.
func (q *quota) uncount(mark quotaMark) {
	q.requests.uncount(1, mark.requests, mark.at)
	q.tokens.uncount(mark.cost, mark.tokens, mark.at)
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
