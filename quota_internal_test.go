package failover

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// quotaNow is the fixed instant the quota tests count from: the meters are pure functions of the times given.
var quotaNow = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)

func TestQuotaEstimateTokens(t *testing.T) {
	// The prompt: the body's length over 4, rounded up.
	for n, want := range map[int]float64{0: 0, 1: 1, 3: 1, 4: 1, 5: 2, 8: 2, 9: 3, 4001: 1001} {
		assert.Equal(t, want, estimateTokens([]byte(strings.Repeat("x", n))), "%d bytes", n)
	}
	// The completion, on top of the prompt.
	for _, tc := range []struct {
		name       string
		body       string
		completion float64
	}{
		{"none", `{"model":"gpt-4o"}`, 0},
		{"max_tokens", `{"max_tokens":100}`, 100},
		{"max_completion_tokens", `{"max_completion_tokens":100}`, 100},
		{"max_tokens wins over max_completion_tokens", `{"max_tokens":10,"max_completion_tokens":100}`, 10},
		{"max_tokens 0 falls back to max_completion_tokens", `{"max_tokens":0,"max_completion_tokens":100}`, 100},
		{"max_tokens null falls back", `{"max_tokens":null,"max_completion_tokens":7}`, 7},
		{"n multiplies", `{"max_tokens":100,"n":3}`, 300},
		{"n before max_tokens", `{"n":3,"max_tokens":100}`, 300},
		{"n multiplies max_completion_tokens", `{"max_completion_tokens":10,"n":4}`, 40},
		{"n of 1", `{"max_tokens":100,"n":1}`, 100},
		{"n of 0 does not zero the completion", `{"max_tokens":100,"n":0}`, 100},
		{"n without a completion budget", `{"n":5}`, 0},
		{"name is not n", `{"name":5,"max_tokens":8}`, 8},
		{"escaped key inside a message is not the member", `{"messages":[{"content":"\"max_tokens\": 900"}]}`, 0},
		{"escaped n inside a message", `{"messages":[{"content":"\"n\": 9"}],"max_tokens":2}`, 2},
		{"whitespace", "{\"max_tokens\" : \n 50 ,\n \"n\":\t2}", 100},
		{"huge max_tokens capped", `{"max_tokens":12345678901}`, maxJSONInt},
		{"huge max_tokens and n", `{"max_tokens":999999999,"n":999999999}`, 999999999 * 999999999},
		{"huge max_tokens and n, both capped", `{"max_tokens":99999999999,"n":99999999999}`, maxJSONInt * maxJSONInt},
	} {
		t.Run(tc.name, func(t *testing.T) {
			prompt := float64((len(tc.body) + 3) / 4)
			assert.Equal(t, prompt+tc.completion, estimateTokens([]byte(tc.body)), tc.body)
		})
	}
}

// TestQuotaEstimateTokensOfAGoOpenAIBody checks the formula on a body as the client builds it.
func TestQuotaEstimateTokensOfAGoOpenAIBody(t *testing.T) {
	body := []byte(`{"model":"gpt-4o","messages":[{"role":"user","content":"Say hello."}],"max_tokens":500,"n":2}`)
	assert.Equal(t, float64((len(body)+3)/4+1000), estimateTokens(body))
}

func TestQuotaJSONInt(t *testing.T) {
	for _, tc := range []struct {
		name, body, key string
		want            int
	}{
		{"plain", `{"max_tokens":5}`, `"max_tokens"`, 5},
		{"whitespace around the colon", "{\"max_tokens\" \t\r\n:\n\t 42 }", `"max_tokens"`, 42},
		{"space before the key", `{ "max_tokens": 7}`, `"max_tokens"`, 7},
		{"nested member", `{"a":{"b":[{"max_tokens":8}]}}`, `"max_tokens"`, 8},
		{"first member not a number, a later one is", `{"max_tokens":null,"x":{"max_tokens":3}}`, `"max_tokens"`, 3},
		{"string value", `{"max_tokens":"5"}`, `"max_tokens"`, 0},
		{"negative", `{"max_tokens":-5}`, `"max_tokens"`, 0},
		{"boolean", `{"max_tokens":true}`, `"max_tokens"`, 0},
		{"object value", `{"n":{"type":"integer"}}`, `"n"`, 0},
		{"fraction reads its whole part", `{"n":2.5}`, `"n"`, 2},
		{"exponent reads its mantissa", `{"n":1e3}`, `"n"`, 1},
		{"zero", `{"n":0}`, `"n"`, 0},
		{"leading zeros", `{"n":007}`, `"n"`, 7},
		{"nine digits", `{"n":999999999}`, `"n"`, 999999999},
		{"nine digits", `{"n":123456789}`, `"n"`, 123456789},
		{"ten digits capped", `{"n":1234567890}`, `"n"`, maxJSONInt},
		{"twenty digits capped", `{"n":99999999999999999999}`, `"n"`, maxJSONInt},
		{"missing", `{"model":"gpt-4o"}`, `"max_tokens"`, 0},
		{"empty body", ``, `"max_tokens"`, 0},
		{"key at the very end", `{"max_tokens"`, `"max_tokens"`, 0},
		{"colon at the very end", `{"max_tokens":`, `"max_tokens"`, 0},
		{"longer key", `{"max_tokens_x":5}`, `"max_tokens"`, 0},
		{"key with a prefix", `{"xmax_tokens":5}`, `"max_tokens"`, 0},
		{"name is not n", `{"name":5}`, `"n"`, 0},
		{"key as a string value", `{"stop":"max_tokens","max_tokens":4}`, `"max_tokens"`, 4},
		{"key as a string value only", `{"stop":"max_tokens"}`, `"max_tokens"`, 0},
		{"escaped quotes in a string", `{"content":"\"max_tokens\": 9"}`, `"max_tokens"`, 0},
		{"escaped quotes, then the member", `{"content":"say \"n\":3","n":2}`, `"n"`, 2},
		{"JSON text inside a string", `{"content":"{\"n\": 12}"}`, `"n"`, 0},
		{"escaped backslash before the closing quote", `{"content":"a\\","n":6}`, `"n"`, 6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, jsonInt([]byte(tc.body), tc.key), "%s in %s", tc.key, tc.body)
		})
	}
}

func TestQuotaJSONTrue(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		want       bool
	}{
		{"true", `{"stream":true}`, true},
		{"whitespace", "{\"stream\" :\n\ttrue}", true},
		{"false", `{"stream":false}`, false},
		{"string true", `{"stream":"true"}`, false},
		{"null", `{"stream":null}`, false},
		{"missing", `{"model":"gpt-4o"}`, false},
		{"nested false, then true", `{"x":{"stream":false},"stream":true}`, true},
		{"stream_options is not stream", `{"stream_options":{"include_usage":true}}`, false},
		{"escaped in a string", `{"content":"\"stream\": true"}`, false},
		{"key as a string value", `{"stop":"stream","x":true}`, false},
		{"empty", ``, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, jsonTrue([]byte(tc.body), `"stream"`), tc.body)
		})
	}
}

func TestQuotaMemberValue(t *testing.T) {
	for _, tc := range []struct {
		name, body, key string
		value           string
		found           bool
	}{
		{"value and what follows", `{"a":1,"b":2}`, `"a"`, `1,"b":2}`, true},
		{"whitespace trimmed both sides", "{\"a\" \n: \t 1}", `"a"`, `1}`, true},
		{"a string value", `{"a":"x"}`, `"a"`, `"x"}`, true},
		{"a key not followed by a colon is skipped", `["a",{"a":2}]`, `"a"`, `2}]`, true},
		{"nested", `{"x":{"a":[3]}}`, `"a"`, `[3]}}`, true},
		{"missing", `{"b":1}`, `"a"`, ``, false},
		{"only as a string value", `{"b":"a"}`, `"a"`, ``, false},
		{"escaped", `{"b":"\"a\":1"}`, `"a"`, ``, false},
		{"colon ends the body", `{"a":`, `"a"`, ``, true},
		{"empty", ``, `"a"`, ``, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			value, found := memberValue([]byte(tc.body), tc.key)
			assert.Equal(t, tc.found, found)
			assert.Equal(t, tc.value, string(value))
		})
	}
}

func TestQuotaMeterArithmetic(t *testing.T) {
	now := quotaNow
	var m meter
	assert.Equal(t, time.Duration(0), m.shortBy(1e9, now), "nothing known: room")

	// x was sent 30 s before a, the request whose answer comes.
	x := m.charge(200, now.Add(-30*time.Second))
	a := m.charge(100, now)
	assert.Equal(t, 200.0, x)
	assert.Equal(t, 300.0, a)
	assert.Equal(t, 300.0, m.sent)
	assert.False(t, m.known)
	assert.Equal(t, time.Duration(0), m.shortBy(1e9, now), "charges alone say nothing")

	m.heard(700, 1000, 100, a, now)
	require.True(t, m.known)
	assert.Equal(t, 1000.0, m.limit)
	assert.Equal(t, 700.0, m.room(now))
	assert.Equal(t, time.Duration(0), m.shortBy(700, now))

	// A send after the answered request comes off at once.
	m.charge(300, now.Add(10*time.Second))
	assert.Equal(t, 400.0, m.room(now.Add(10*time.Second)))
	assert.Equal(t, time.Duration(0), m.shortBy(400, now.Add(10*time.Second)))
	// 100 missing: x leaves the minute at now+30s and gives its 200 back.
	assert.Equal(t, 20*time.Second, m.shortBy(500, now.Add(10*time.Second)))
	assert.Equal(t, 400.0, m.room(now.Add(30*time.Second-time.Nanosecond)))
	assert.Equal(t, 600.0, m.room(now.Add(30*time.Second)))
	assert.Equal(t, time.Duration(0), m.shortBy(500, now.Add(30*time.Second)))
	// 300 missing at now+30s: the next sends to leave (a at now+60s, then the one at now+70s) come after the news
	// itself is forgotten, a minute after a was sent.
	assert.Equal(t, 30*time.Second, m.shortBy(900, now.Add(30*time.Second)))
	// Time going back changes nothing it should not: the room at now is what the answer said, less the send.
	assert.Equal(t, 400.0, m.room(now))
}

func TestQuotaMeterRoomCappedAtTheLimit(t *testing.T) {
	now := quotaNow
	var m meter
	m.charge(500, now.Add(-30*time.Second))
	a := m.charge(1, now)
	m.heard(900, 1000, 1, a, now)
	assert.Equal(t, 900.0, m.room(now))
	assert.Equal(t, 1000.0, m.room(now.Add(30*time.Second)), "900 left and 500 back is still the limit at most")

	m.heard(5000, 1000, 1, m.charge(1, now.Add(time.Second)), now.Add(time.Second))
	assert.Equal(t, 1000.0, m.left, "left is never above the limit")
}

func TestQuotaMeterLearnsTheLimit(t *testing.T) {
	now := quotaNow
	var m meter
	m.heard(100, 0, 50, m.charge(50, now), now)
	assert.True(t, m.known)
	assert.Equal(t, 150.0, m.limit, "left plus the request's cost was free before it")
	m.heard(500, 0, 50, m.charge(50, now.Add(time.Second)), now.Add(time.Second))
	assert.Equal(t, 550.0, m.limit, "the most seen")
	m.heard(10, 0, 50, m.charge(50, now.Add(2*time.Second)), now.Add(2*time.Second))
	assert.Equal(t, 550.0, m.limit, "less left does not lower it")
	assert.Equal(t, 10.0, m.left)
	m.heard(10, 120, 50, m.charge(50, now.Add(3*time.Second)), now.Add(3*time.Second))
	assert.Equal(t, 120.0, m.limit, "a limit header sets it, lower too")
	m.heard(10, 6000, 50, m.charge(50, now.Add(4*time.Second)), now.Add(4*time.Second))
	assert.Equal(t, 6000.0, m.limit, "or higher")

	// Nothing left and nothing taken (a 429 to a fresh meter): no limit, so nothing is known.
	var fresh meter
	fresh.heard(0, 0, 0, fresh.charge(50, now), now)
	assert.False(t, fresh.known)
	assert.Equal(t, time.Duration(0), fresh.shortBy(1e9, now))
}

func TestQuotaMeterAnswerPlacedAgainstItsMark(t *testing.T) {
	now := quotaNow
	var m meter
	m.heard(1000, 1000, 1, m.charge(1, now), now) // an earlier answer: 1000 left
	a := m.charge(100, now.Add(time.Second))
	b := m.charge(200, now.Add(2*time.Second))
	c := m.charge(300, now.Add(3*time.Second))
	later := now.Add(4 * time.Second)

	// a's answer: 900 left after a; b and c are in no answer yet.
	m.heard(900, 1000, 100, a, now.Add(time.Second))
	assert.Equal(t, 900.0-200-300, m.room(later), "requests sent after the answered one stay charged")
	// c's answer counts all three: nothing sent after it.
	m.heard(400, 1000, 300, c, now.Add(3*time.Second))
	assert.Equal(t, 400.0, m.room(later))
	// b's answer, arriving late, is older news than c's: not taken in.
	m.heard(700, 1000, 200, b, now.Add(2*time.Second))
	assert.Equal(t, 400.0, m.room(later))
	assert.Equal(t, now.Add(3*time.Second), m.sentAt)
}

func TestQuotaMeterKeepsRoomForOtherClients(t *testing.T) {
	now := quotaNow
	var m meter
	m.heard(900, 1000, 100, m.charge(100, now), now)
	assert.Equal(t, 900.0, m.room(now), "no surprise yet")
	// Expected 800 after b; the answer says 500: other clients took 300. A quarter of it is kept as surprise,
	// and room is kept free for it.
	m.heard(500, 1000, 100, m.charge(100, now.Add(time.Second)), now.Add(time.Second))
	assert.Equal(t, 75.0, m.surprise)
	kept := 500 - m.room(now.Add(time.Second))
	assert.Greater(t, kept, 75.0, "at least the surprise is kept free")
	// An answer with more left than expected lets the surprise decay.
	m.heard(450, 1000, 100, m.charge(100, now.Add(2*time.Second)), now.Add(2*time.Second))
	assert.Equal(t, 75.0*3/4, m.surprise)
	assert.InDelta(t, kept*3/4, 450-m.room(now.Add(2*time.Second)), 1e-9, "room kept in proportion")
}

func TestQuotaMeterSendLogIsBounded(t *testing.T) {
	now := quotaNow
	var m meter
	for i := range maxSendLog + 10 {
		m.charge(1, now.Add(time.Duration(i)*time.Millisecond))
	}
	// Full, the log forgets its older half at once.
	assert.Len(t, m.log, maxSendLog/2+10)
	assert.Equal(t, float64(maxSendLog/2), m.floor, "the forgotten sends are in the floor")
	assert.Equal(t, float64(maxSendLog/2), m.markAt(now))
	assert.Equal(t, float64(maxSendLog+10), m.markAt(now.Add(time.Hour)))

	// An answer drops the sends that had left the minute before its request.
	var n meter
	n.charge(10, now.Add(-2*time.Minute))
	n.charge(20, now.Add(-90*time.Second))
	n.charge(30, now.Add(-30*time.Second))
	a := n.charge(40, now)
	n.heard(100, 1000, 40, a, now)
	assert.Len(t, n.log, 2)
	assert.Equal(t, 30.0, n.floor)
}

// quotaHeader builds an answer's rate-limit headers as net/http hands them over (canonical names); an empty
// value leaves the header out.
func quotaHeader(requests, tokens, limitRequests, limitTokens string) http.Header {
	h := http.Header{}
	for name, v := range map[string]string{
		"x-ratelimit-remaining-requests": requests, "x-ratelimit-remaining-tokens": tokens,
		"x-ratelimit-limit-requests": limitRequests, "x-ratelimit-limit-tokens": limitTokens,
	} {
		if v != "" {
			h.Set(name, v)
		}
	}
	return h
}

func TestQuotaHealthChargeAndHeard(t *testing.T) {
	now := quotaNow
	var h health
	assert.Equal(t, time.Duration(0), h.roomFor("gpt-4o", 1e6, now), "nothing known: room")
	assert.Empty(t, h.quotas, "asking creates nothing")

	mark := h.charge("gpt-4o", 100, now)
	assert.Equal(t, quotaMark{cost: 100, requests: 1, tokens: 100, at: now}, mark)
	// The answer comes 2 s later; its count is as of when the request was sent.
	h.heard("gpt-4o", http.StatusOK, quotaHeader("10", "150", "", ""), mark, 0, now.Add(2*time.Second))
	q := h.quotas["gpt-4o"]
	require.NotNil(t, q)
	assert.Equal(t, now, q.tokens.sentAt)
	assert.Equal(t, 250.0, q.tokens.limit, "learned: 150 left after 100")
	assert.Equal(t, 11.0, q.requests.limit)

	assert.Equal(t, time.Duration(0), h.roomFor("gpt-4o", 150, now.Add(2*time.Second)))
	// 50 missing: the request leaves the minute, and the news is forgotten, at now+60s.
	assert.Equal(t, 58*time.Second, h.roomFor("gpt-4o", 200, now.Add(2*time.Second)))
	assert.Equal(t, time.Duration(0), h.roomFor("gpt-4-other", 1e6, now), "per model")

	// Requests: none left means no room whatever the tokens.
	mark = h.charge("gpt-4o", 1, now.Add(3*time.Second))
	h.heard("gpt-4o", http.StatusOK, quotaHeader("0", "6000", "20", "6000"), mark, 0, now.Add(3*time.Second))
	assert.Greater(t, h.roomFor("gpt-4o", 1, now.Add(3*time.Second)), time.Duration(0))
	assert.Equal(t, 20.0, h.quotas["gpt-4o"].requests.limit)
}

func TestQuotaHealthRestCountsAsNoRoom(t *testing.T) {
	now := quotaNow
	p := &restPolicy{backoff: func(int) time.Duration { return time.Second }, fault: time.Minute, missing: time.Hour}
	var h health
	h.failed("gpt-4o", ticket{start: now}, 429, verdict{kind: restThrottled, wait: 5 * time.Second}, p, now)
	assert.Equal(t, 5*time.Second, h.roomFor("gpt-4o", 1, now))
	assert.Equal(t, 2*time.Second, h.roomFor("gpt-4o", 1, now.Add(3*time.Second)))
	assert.Equal(t, time.Duration(0), h.roomFor("gpt-4o", 1, now.Add(5*time.Second)), "over: the probe may go")
	assert.Equal(t, time.Duration(0), h.roomFor("gpt-4-other", 1, now))

	// A failing region's probe in flight: look again shortly.
	var failing health
	failing.failed("gpt-4o", ticket{start: now}, 500, verdict{kind: restFailing}, p, now)
	assert.Equal(t, time.Second, failing.roomFor("gpt-4o", 1, now))
	_, _, ok := failing.admit("gpt-4o", now.Add(time.Second))
	require.True(t, ok)
	assert.Equal(t, probePoll, failing.roomFor("gpt-4o", 1, now.Add(time.Second)))

	var missing health
	missing.failed("gpt-4o", ticket{start: now}, 404, verdict{kind: restMissing}, p, now)
	assert.Equal(t, time.Hour, missing.roomFor("gpt-4o", 1, now))
}

func TestQuotaHealthIgnoresBadHeaders(t *testing.T) {
	now := quotaNow
	for _, bad := range []string{"abc", "-5", "1.5", "1e3", " 5", "0x10", "+5", "9007199254740992", "18446744073709551616"} {
		t.Run(bad, func(t *testing.T) {
			var h health
			// A good answer first: 500 tokens left of 600 a minute.
			h.heard("gpt-4o", http.StatusOK, quotaHeader("", "500", "", "600"), h.charge("gpt-4o", 100, now), 0, now)
			q := h.quotas["gpt-4o"]
			require.Equal(t, 500.0, q.tokens.left)

			// The bad values are ignored: the meter stays as it was, less the new charge.
			h.heard("gpt-4o", http.StatusOK, quotaHeader(bad, bad, bad, bad), h.charge("gpt-4o", 100, now), 0, now)
			assert.Equal(t, 500.0, q.tokens.left, "%q was read as tokens left", bad)
			assert.Equal(t, 400.0, q.tokens.room(now))
			assert.Equal(t, 600.0, q.tokens.limit)
			assert.False(t, q.requests.known, "%q was read as requests left", bad)

			// A bad limit beside a good count: the count is read, the limit ignored.
			h.heard("gpt-4o", http.StatusOK, quotaHeader("", "50", "", bad), h.charge("gpt-4o", 100, now), 0, now)
			assert.Equal(t, 50.0, q.tokens.left)
			assert.Equal(t, 600.0, q.tokens.limit)
		})
	}
	t.Run("no headers", func(t *testing.T) {
		var h health
		mark := h.charge("gpt-4o", 100, now)
		h.heard("gpt-4o", http.StatusOK, http.Header{}, mark, 0, now)
		h.heard("gpt-4o", http.StatusOK, nil, mark, 0, now)
		assert.Equal(t, time.Duration(0), h.roomFor("gpt-4o", 1e6, now))
		assert.False(t, h.quotas["gpt-4o"].tokens.known)
	})
	t.Run("nothing charged", func(t *testing.T) {
		var h health
		h.heard("gpt-4o", http.StatusOK, quotaHeader("0", "0", "", ""), quotaMark{}, 0, now)
		assert.Equal(t, time.Duration(0), h.roomFor("gpt-4o", 1e6, now), "an answer to an uncharged request is not placed")
		assert.Empty(t, h.quotas)
	})
	t.Run("non-canonical name", func(t *testing.T) {
		var h health
		mark := h.charge("gpt-4o", 100, now)
		h.heard("gpt-4o", http.StatusOK, http.Header{"x-ratelimit-remaining-tokens": {"0"}}, mark, 0, now)
		assert.Equal(t, time.Duration(0), h.roomFor("gpt-4o", 1e6, now), "net/http canonicalizes; a raw map is not read")
	})
	t.Run("first of several values", func(t *testing.T) {
		var h health
		mark := h.charge("gpt-4o", 100, now)
		h.heard("gpt-4o", http.StatusOK, http.Header{headerRemainingTokens: {"0", "5000"}}, mark, 0, now)
		assert.Equal(t, 0.0, h.quotas["gpt-4o"].tokens.left)
	})
}

func TestQuotaHealthAnswerPlacedAgainstItsMark(t *testing.T) {
	now := quotaNow
	var h health
	h.heard("gpt-4o", http.StatusOK, quotaHeader("100", "10000", "100", "10000"), h.charge("gpt-4o", 10, now), 0, now)

	a := h.charge("gpt-4o", 1000, now.Add(time.Second))
	h.charge("gpt-4o", 2000, now.Add(2*time.Second))
	h.charge("gpt-4o", 3000, now.Add(3*time.Second))
	// a's answer: 9000 left after a, as expected; the two sent after it are in no answer yet.
	h.heard("gpt-4o", http.StatusOK, quotaHeader("99", "9000", "100", "10000"), a, 0, now.Add(4*time.Second))
	q := h.quotas["gpt-4o"]
	require.Zero(t, q.tokens.surprise)
	require.Zero(t, q.requests.surprise)
	at := now.Add(4 * time.Second)
	assert.Equal(t, 9000.0-2000-3000, q.tokens.room(at))
	assert.Equal(t, 99.0-2, q.requests.room(at))
	assert.Equal(t, time.Duration(0), h.roomFor("gpt-4o", 4000, at))
	assert.Greater(t, h.roomFor("gpt-4o", 4001, at), time.Duration(0))
}

// TestQuotaFirstAnswerKeepsLaterCharges: requests sent before the first answer came are in flight when it
// comes; the ones sent after the answered one are in no answer, and must stay charged.
func TestQuotaFirstAnswerKeepsLaterCharges(t *testing.T) {
	now := quotaNow
	var h health
	a := h.charge("gpt-4o", 1000, now)
	h.charge("gpt-4o", 2000, now)
	h.charge("gpt-4o", 3000, now)
	h.heard("gpt-4o", http.StatusOK, quotaHeader("90", "8000", "100", "10000"), a, 0, now)
	q := h.quotas["gpt-4o"]
	assert.Equal(t, 8000.0-2000-3000, q.tokens.room(now))
	assert.Equal(t, 90.0-2, q.requests.room(now))
}

func TestQuotaForgottenAMinuteAfterTheAnsweredRequest(t *testing.T) {
	now := quotaNow
	var h health
	mark := h.charge("gpt-4o", 2000, now)
	// No room for a request of 2000 with a limit of 1000: the answer, 5 s later, counts as of now.
	h.heard("gpt-4o", http.StatusOK, quotaHeader("", "0", "", "1000"), mark, 0, now.Add(5*time.Second))
	assert.Equal(t, 55*time.Second, h.roomFor("gpt-4o", 2000, now.Add(5*time.Second)))
	assert.Equal(t, time.Second, h.roomFor("gpt-4o", 2000, now.Add(59*time.Second)))
	assert.Equal(t, time.Nanosecond, h.roomFor("gpt-4o", 2000, now.Add(time.Minute)), "a minute exactly still counts")
	assert.Equal(t, time.Duration(0), h.roomFor("gpt-4o", 2000, now.Add(time.Minute+time.Nanosecond)),
		"forgotten a minute after the answered request was sent")
	q := h.quotas["gpt-4o"]
	require.NotNil(t, q)
	assert.False(t, q.tokens.known)
	assert.False(t, q.requests.known)

	// Newer news keeps it: an answer to a request sent at 50 s counts from then.
	h.heard("gpt-4o", http.StatusOK, quotaHeader("", "0", "", "1000"), h.charge("gpt-4o", 2000, now), 0, now)
	h.heard("gpt-4o", http.StatusOK, quotaHeader("", "0", "", "1000"),
		h.charge("gpt-4o", 10, now.Add(50*time.Second)), 0, now.Add(50*time.Second))
	assert.Greater(t, h.roomFor("gpt-4o", 2000, now.Add(100*time.Second)), time.Duration(0))
	assert.Equal(t, time.Duration(0), h.roomFor("gpt-4o", 2000, now.Add(111*time.Second)))

	// A charge is not news: it does not keep what was heard.
	var g health
	g.heard("gpt-4o", http.StatusOK, quotaHeader("", "0", "", "1000"), g.charge("gpt-4o", 2000, now), 0, now)
	g.charge("gpt-4o", 10, now.Add(50*time.Second))
	assert.Equal(t, time.Duration(0), g.roomFor("gpt-4o", 2000, now.Add(61*time.Second)))
}

// TestQuotaForgettingKeepsChargesInFlight: a request sent just before the news was forgotten is answered after;
// its mark must still be placed against the same count of sends as the ones made since.
func TestQuotaForgettingKeepsChargesInFlight(t *testing.T) {
	now := quotaNow
	var h health
	h.heard("gpt-4o", http.StatusOK, quotaHeader("", "5000", "", "10000"), h.charge("gpt-4o", 5000, now), 0, now)
	b := h.charge("gpt-4o", 100, now.Add(59*time.Second)) // in flight when the news is forgotten
	h.charge("gpt-4o", 800, now.Add(61*time.Second))      // sent after b: in no answer yet
	h.heard("gpt-4o", http.StatusOK, quotaHeader("", "4000", "", "10000"), b, 0, now.Add(62*time.Second))
	room := h.quotas["gpt-4o"].tokens.room(now.Add(62 * time.Second))
	// b's count less the 800 sent after it, plus the 5000 sent at 0 s, which left the minute at 60 s.
	assert.Equal(t, 4000.0-800+5000, room)
}

// TestQuotaRoomBackAfterA429: a 429 rests the region as long as its Retry-After says; once that is over, the
// region has room again by its own word, whatever the 429's x-ratelimit-remaining-* said.
func TestQuotaRoomBackAfterA429(t *testing.T) {
	now := quotaNow
	p := &restPolicy{backoff: func(int) time.Duration { return time.Second }, fault: time.Minute, missing: time.Hour}
	var h health
	// An earlier answer: plenty left, of a known limit.
	h.heard("gpt-4o", http.StatusOK, quotaHeader("99", "59000", "100", "60000"), h.charge("gpt-4o", 1000, now), 0, now)
	require.Equal(t, time.Duration(0), h.roomFor("gpt-4o", 1000, now))

	// Then a 429 with Retry-After: 5 (other clients took the rest).
	t429 := now.Add(time.Second)
	mark := h.charge("gpt-4o", 1000, t429)
	h.heard("gpt-4o", http.StatusTooManyRequests, quotaHeader("0", "0", "", ""), mark, 5*time.Second, t429)
	h.failed("gpt-4o", ticket{start: t429}, 429, verdict{kind: restThrottled, wait: 5 * time.Second}, p, t429)
	assert.GreaterOrEqual(t, h.roomFor("gpt-4o", 1000, t429), 5*time.Second, "the rest")
	assert.Equal(t, 60000.0, h.quotas["gpt-4o"].tokens.limit, "a 429's count does not raise the limit")

	after := t429.Add(5 * time.Second)
	assert.Equal(t, time.Duration(0), h.roomFor("gpt-4o", 1000, after), "room again once Retry-After has passed")
	assert.Greater(t, h.roomFor("gpt-4o", 2000, after), time.Duration(0), "for the refused request's cost, not more")
}

func TestQuotaModelsAreBounded(t *testing.T) {
	now := quotaNow
	var h health
	for i := range maxTrackedModels + 10 {
		model := fmt.Sprintf("made-up-%d", i)
		mark := h.charge(model, 100, now)
		if i < maxTrackedModels {
			assert.Equal(t, 100.0, mark.cost, model)
		} else {
			assert.Zero(t, mark.cost, "no room for %s: nothing is charged", model)
		}
		h.heard(model, http.StatusOK, quotaHeader("0", "0", "", ""), mark, 0, now)
	}
	assert.Len(t, h.quotas, maxTrackedModels, "made-up model names cannot grow the map without end")
	assert.Greater(t, h.roomFor("made-up-0", 1, now), time.Duration(0), "the models tracked stay tracked")
	assert.Equal(t, time.Duration(0), h.roomFor(fmt.Sprintf("made-up-%d", maxTrackedModels), 1, now))
	assert.Len(t, h.quotas, maxTrackedModels, "asking adds nothing")
}

// TestQuotaStaleModelsMakeRoom: once the made-up names' news is long forgotten, they hold nothing: a real model
// seen later should still be tracked, as state.go's setModelLocked forgets rests that are over.
func TestQuotaStaleModelsMakeRoom(t *testing.T) {
	now := quotaNow
	var h health
	for i := range maxTrackedModels {
		model := fmt.Sprintf("made-up-%d", i)
		h.heard(model, http.StatusOK, quotaHeader("0", "0", "", ""), h.charge(model, 100, now), 0, now)
	}
	later := now.Add(time.Hour)
	mark := h.charge("gpt-4o", 100, later)
	require.NotZero(t, mark.cost, "quotas that know nothing any more make room for a new model")
	h.heard("gpt-4o", http.StatusOK, quotaHeader("0", "0", "", ""), mark, 0, later)
	assert.Greater(t, h.roomFor("gpt-4o", 100, later), time.Duration(0))
	assert.LessOrEqual(t, len(h.quotas), maxTrackedModels)
}

// starve makes b's answers say that model had left tokens, of 60000 a minute, when a request was sent at: the
// region has no room for more until the news is forgotten, at+1min.
func starve(b *backend, model string, left int, at time.Time) {
	mark := b.health.charge(model, 1, at)
	b.health.heard(model, http.StatusOK, quotaHeader("1000", strconv.Itoa(left), "1000", "60000"), mark, 0, at)
}

// roomy makes b's answers say that model has plenty of room.
func roomy(b *backend, model string, now time.Time) {
	mark := b.health.charge(model, 1, now)
	b.health.heard(model, http.StatusOK, quotaHeader("1000", "60000", "1000", "60000"), mark, 0, now)
}

func TestSteerPutsRoomFirst(t *testing.T) {
	const model, cost = "gpt-4o", 10000
	for _, tc := range []struct {
		name       string
		strategy   Strategy
		priorities []int
		short      map[int]time.Duration // region index to how long ago its news said it had no room; others roomy
		want       []string
	}{
		{"room first within a priority", StrategyOrdered, []int{0, 0, 0, 1},
			map[int]time.Duration{0: 0}, []string{"r1", "r2", "r3", "r0"}},
		{"a region with room in the next priority before a roomless one", StrategyOrdered, []int{0, 1},
			map[int]time.Duration{0: 0}, []string{"r1", "r0"}},
		{"next priority keeps its order too", StrategyOrdered, []int{0, 0, 1, 1},
			map[int]time.Duration{0: 0, 1: 0}, []string{"r2", "r3", "r0", "r1"}},
		{"roomless by how soon they have room", StrategyOrdered, []int{0, 0, 0, 1},
			map[int]time.Duration{0: 0, 1: 30 * time.Second, 2: 50 * time.Second}, []string{"r3", "r2", "r1", "r0"}},
		{"roomless in order when they wait alike", StrategyOrdered, []int{0, 0, 1},
			map[int]time.Duration{0: 0, 1: 0, 2: 0}, []string{"r0", "r1", "r2"}},
		{"roomless sooner in priority 1 before later in priority 0", StrategyOrdered, []int{0, 1},
			map[int]time.Duration{0: 0, 1: 30 * time.Second}, []string{"r1", "r0"}},
		{"round robin too", StrategyRoundRobin, []int{0, 0},
			map[int]time.Duration{0: 0}, []string{"r1", "r0"}},
		{"least latency too", StrategyLeastLatency, []int{0, 0, 0},
			map[int]time.Duration{1: 0}, []string{"r0", "r2", "r1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := routedEngine(t, tc.strategy, true, tc.priorities, nil)
			require.True(t, e.steering)
			configured := backendNames(e.backends)
			now := time.Now()
			allShort := true
			for i, b := range e.backends {
				if b.fallback {
					continue
				}
				if ago, short := tc.short[i]; short {
					starve(b, model, 0, now.Add(-ago))
				} else {
					roomy(b, model, now)
					allShort = false
				}
			}
			want := append(tc.want, OpenAIFallbackName)
			var buf [8]*backend
			for range 4 { // round robin: every start
				order, roomIn := e.order(buf[:0], model, cost)
				assert.Equal(t, want, backendNames(order))
				if allShort {
					assert.Greater(t, roomIn, time.Duration(0))
				} else {
					assert.Zero(t, roomIn, "a region has room now")
				}
			}
			assert.Equal(t, configured, backendNames(e.backends), "e.backends is as it was")
			// Another model, of which nothing is known: the strategy's order.
			if tc.strategy == StrategyOrdered {
				order, roomIn := e.order(buf[:0], "gpt-4o-mini", cost)
				assert.Equal(t, configured, backendNames(order))
				assert.Zero(t, roomIn)
			}
		})
	}
}

func TestSteerFallbackLastWhenEveryRegionIsShort(t *testing.T) {
	e := routedEngine(t, StrategyOrdered, true, []int{0, 1}, nil)
	now := time.Now()
	starve(e.backends[0], "gpt-4o", 5000, now.Add(-20*time.Second))
	starve(e.backends[1], "gpt-4o", 0, now.Add(-50*time.Second))
	var buf [8]*backend
	order, roomIn := e.order(buf[:0], "gpt-4o", 10000)
	assert.Equal(t, []string{"r1", "r0", OpenAIFallbackName}, backendNames(order), "soonest first, the fallback last")
	assert.InDelta(t, float64(10*time.Second), float64(roomIn), float64(time.Second), "r1's news is forgotten in 10 s")
	assert.Equal(t, []string{"r0", "r1", OpenAIFallbackName}, backendNames(e.backends))
	// A request too large for any limit still goes to the regions before the fallback.
	order, _ = e.order(buf[:0], "gpt-4o", 1e12)
	assert.Equal(t, []string{"r1", "r0", OpenAIFallbackName}, backendNames(order))
}

func TestSteerLeavesTheOrderAloneWhenEveryRegionHasRoom(t *testing.T) {
	e := routedEngine(t, StrategyOrdered, true, []int{0, 0, 1}, nil)
	now := time.Now()
	for _, b := range e.backends[:3] {
		roomy(b, "gpt-4o", now)
	}
	var buf [8]*backend
	order, roomIn := e.order(buf[:0], "gpt-4o", 100)
	require.Len(t, order, 4)
	assert.Zero(t, roomIn)
	assert.Same(t, &e.backends[0], &order[0], "the shared order itself, not a copy")
	assert.Nil(t, buf[0], "buf untouched")
	allocs := testing.AllocsPerRun(100, func() { e.order(buf[:0], "gpt-4o", 100) })
	assert.Zero(t, allocs)

	// Steering a shared order copies it to buf, and does not allocate either.
	starve(e.backends[0], "gpt-4o", 0, now)
	order, roomIn = e.order(buf[:0], "gpt-4o", 100)
	assert.Zero(t, roomIn)
	assert.Same(t, &buf[0], &order[0], "the copy is in buf")
	assert.Equal(t, []string{"r1", "r2", "r0", OpenAIFallbackName}, backendNames(order))
	assert.Equal(t, []string{"r0", "r1", "r2", OpenAIFallbackName}, backendNames(e.backends))
	allocs = testing.AllocsPerRun(100, func() { e.order(buf[:0], "gpt-4o", 100) })
	assert.Zero(t, allocs)
}

func TestSteerRegionThatLacksTheModel(t *testing.T) {
	regions := []Region{
		{Name: "r0", Endpoint: "https://r0.openai.azure.com", APIKey: "key"},
		{Name: "r1", Endpoint: "https://r1.openai.azure.com", APIKey: "key", Deployments: map[string]string{"other": ""}},
		{Name: "r2", Endpoint: "https://r2.openai.azure.com", APIKey: "key"},
	}
	c, err := New(regions)
	require.NoError(t, err)
	t.Cleanup(c.CloseIdleConnections)
	e := c.engine
	now := time.Now()
	starve(e.backends[0], "gpt-4o", 0, now)
	roomy(e.backends[2], "gpt-4o", now)
	var buf [8]*backend
	order, roomIn := e.order(buf[:0], "gpt-4o", 100)
	assert.Equal(t, []string{"r1", "r2", "r0"}, backendNames(order), "r1 is passed over later anyway; r2 comes before r0")
	assert.Zero(t, roomIn)

	// Only r0 serves it and has no room: roomIn says when it will.
	c2, err := New([]Region{regions[0], regions[1]})
	require.NoError(t, err)
	t.Cleanup(c2.CloseIdleConnections)
	starve(c2.engine.backends[0], "gpt-4o", 0, now.Add(-30*time.Second))
	_, roomIn = c2.engine.order(buf[:0], "gpt-4o", 100)
	assert.InDelta(t, float64(30*time.Second), float64(roomIn), float64(time.Second), "a region that lacks the model has no say")
}

func TestSteeringIsOnWithTwoRegions(t *testing.T) {
	regions := []Region{
		{Name: "r0", Endpoint: "https://r0.openai.azure.com", APIKey: "key"},
		{Name: "r1", Endpoint: "https://r1.openai.azure.com", APIKey: "key"},
	}
	for _, tc := range []struct {
		name    string
		regions []Region
		opts    []Option
		want    bool
	}{
		{"two regions", regions, nil, true},
		{"two regions, turned off", regions, []Option{WithQuotaSteering(false)}, false},
		{"two regions, turned off then on", regions, []Option{WithQuotaSteering(false), WithQuotaSteering(true)}, true},
		{"one region", regions[:1], nil, false},
		{"one region and the fallback", regions[:1], []Option{WithOpenAIFallback("sk-key", "")}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := New(tc.regions, tc.opts...)
			require.NoError(t, err)
			t.Cleanup(c.CloseIdleConnections)
			assert.Equal(t, tc.want, c.engine.steering)
		})
	}
}

// TestQuotaStaleMeterForgottenWithNewerNewsOfTheOther: answers that carry only x-ratelimit-remaining-requests
// keep the quota's news fresh; the tokens meter's own news, a minute old, must not hold the region back.
func TestQuotaStaleMeterForgottenWithNewerNewsOfTheOther(t *testing.T) {
	now := quotaNow
	var h health
	h.heard("gpt-4o", http.StatusOK, quotaHeader("100", "0", "1000", "1000"), h.charge("gpt-4o", 1000, now), 0, now)
	require.Greater(t, h.roomFor("gpt-4o", 1000, now), time.Duration(0))
	later := now.Add(50 * time.Second)
	h.heard("gpt-4o", http.StatusOK, quotaHeader("900", "", "1000", ""), h.charge("gpt-4o", 1000, later), 0, later)
	at := now.Add(70 * time.Second)
	assert.Equal(t, time.Duration(0), h.roomFor("gpt-4o", 1000, at), "each meter forgets its own news a minute on")
}

// TestQuotaLargeBodyReadsItsEnd: a body known only by its GetBody and larger than maxScanned is estimated from its
// length and its last maxScanned bytes, where go-openai writes max_tokens, whether the body comes in one piece (a
// bytes.Reader writes itself whole) or in many.
func TestQuotaLargeBodyReadsItsEnd(t *testing.T) {
	data := []byte(`{"model":"gpt-4o","messages":[{"role":"user","content":"` + strings.Repeat("a", 3*maxScanned) +
		`"}],"max_tokens":250,"n":2}`)
	want := float64((len(data)+3)/4 + 500)
	whole := requestBody{get: func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil },
		length: int64(len(data))}
	pieces := requestBody{get: func() (io.ReadCloser, error) {
		return io.NopCloser(&chunkedBody{data: data, size: 10_000, end: io.EOF}), nil
	}, length: int64(len(data))}
	for name, body := range map[string]requestBody{"one piece": whole, "pieces": pieces} {
		t.Run(name, func(t *testing.T) {
			var seen []byte
			require.True(t, readBodyBytes(body, func(_, d []byte) { seen = bytes.Clone(d) }))
			assert.Equal(t, data[len(data)-maxScanned:], seen, "the body's last maxScanned bytes")
			c := call{request: request{e: &engine{}, body: body}}
			shape(&c, true)
			assert.Equal(t, want, c.cost)
		})
	}
}
