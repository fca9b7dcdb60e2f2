package failover

import (
	"math/big"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"
)

// fuzzRetryNow is the fixed "now" FuzzRetryAfter reads HTTP dates against: the time of classify_test.go's dates.
var fuzzRetryNow = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)

// decimalDelay matches what Azure sends as a delay: digits, possibly with a fraction (retry-after-ms: 12.5).
var decimalDelay = regexp.MustCompile(`^[0-9]+(\.[0-9]+)?$`)

// expectedDelay is the delay a decimal value of units means, by exact arithmetic (no float64 on the way), capped at
// maxRetryAfter; ok is false when v is not a decimal.
func expectedDelay(v string, unit time.Duration) (d time.Duration, ok bool) {
	v = strings.TrimSpace(v)
	if !decimalDelay.MatchString(v) {
		return 0, false
	}
	r, ok := new(big.Rat).SetString(v)
	if !ok {
		return 0, false
	}
	r.Mul(r, new(big.Rat).SetInt64(int64(unit)))
	if r.Cmp(new(big.Rat).SetInt64(int64(maxRetryAfter))) >= 0 {
		return maxRetryAfter, true
	}
	n := new(big.Int).Quo(r.Num(), r.Denom()) // truncated to whole nanoseconds
	return time.Duration(n.Int64()), true
}

// fuzzRetryAfterSeeds are retry headers as Azure OpenAI, APIM and proxies send them, and the garbage they must
// survive: retry-after-ms, x-ms-retry-after-ms, retry-after (seconds or an HTTP date), dateOffset (seconds from
// now) used to build a date when asDate is set.
var fuzzRetryAfterSeeds = []struct {
	ms, xms, ra string
	dateOffset  int64
	asDate      uint8
}{
	// Azure OpenAI's 429: both headers.
	{"30000", "", "30", 0, 0},
	{"6000", "", "6", 0, 0},
	{"", "", "6", 0, 0},
	{"250", "", "", 0, 0},
	{"12.5", "", "", 0, 0},
	{"", "1500", "", 0, 0},
	{"", "", "1.5", 0, 0},
	{"A", "", "17.100201007999998", 0, 0}, // a float64 rounds it up a nanosecond
	{"", "", "86399.9999999999", 0, 0},
	{"", "", " 7 ", 0, 0},
	{"", "", "0", 0, 0},
	{"0", "", "60", 0, 0},
	// A day, and beyond.
	{"", "", "86400", 0, 0},
	{"", "", "86401", 0, 0},
	{"86400000", "", "", 0, 0},
	{"", "", "1e300", 0, 0},
	{"", "", "99999999999999999999999999", 0, 0},
	{"", "", "9223372036854775807", 0, 0},
	{"", "9223372036854775808", "", 0, 0},
	// HTTP dates, in the three formats http.ParseTime reads, in the future and the past.
	{"", "", "Sun, 22 Nov 2026 10:00:30 GMT", 0, 0},
	{"", "", "Sun, 22 Nov 2026 09:59:00 GMT", 0, 0},
	{"", "", "Sunday, 22-Nov-26 10:01:00 GMT", 0, 0},
	{"", "", "Sun Nov 22 10:00:05 2026", 0, 0},
	{"", "", "Fri, 31 Dec 9999 23:59:59 GMT", 0, 0},
	{"", "", "Mon, 01 Jan 0001 00:00:00 GMT", 0, 0},
	{"", "", "", 30, 1},
	{"", "", "", -30, 2},
	{"", "", "", 200000, 3},
	{"", "", "", 0, 1},
	// Negatives, signs, Go durations, words, special floats, hex floats, exponents, separators.
	{"-1", "", "-5", 0, 0},
	{"+5", "", "+5", 0, 0},
	{"", "", "6s", 0, 0},
	{"", "", "soon", 0, 0},
	{"NaN", "Inf", "-Inf", 0, 0},
	{"1e400", "", "", 0, 0},
	{"0x1p4", "", "0x10", 0, 0},
	{"1_000", "", "1,5", 0, 0},
	{"", "", ".5", 0, 0},
	{"", "", "5.", 0, 0},
	{"", "", "1e-400", 0, 0},
	{"", "", "\x00\xff", 0, 0},
	{"garbage", "-3", "12", 0, 0},
}

func FuzzRetryAfter(f *testing.F) {
	for _, s := range fuzzRetryAfterSeeds {
		f.Add(s.ms, s.xms, s.ra, s.dateOffset, s.asDate)
	}
	formats := []string{http.TimeFormat, time.RFC850, time.ANSIC}
	f.Fuzz(func(t *testing.T, ms, xms, ra string, dateOffset int64, asDate uint8) {
		now := fuzzRetryNow
		if asDate != 0 {
			// A date built from the offset, in one of the three formats; whole seconds, within a few years.
			dateOffset %= 1e8
			ra = now.Add(time.Duration(dateOffset) * time.Second).UTC().Format(formats[int(asDate)%len(formats)])
		}
		h := http.Header{}
		for name, v := range map[string]string{"Retry-After-Ms": ms, "X-Ms-Retry-After-Ms": xms, "Retry-After": ra} {
			if v != "" {
				h.Set(name, v)
			}
		}
		d, ok := retryAfter(h, now)

		// Bounded, never negative, and nothing without a value.
		if d < 0 || d > maxRetryAfter {
			t.Fatalf("retryAfter(%q) = %v, outside [0, %v]", h, d, maxRetryAfter)
		}
		if !ok && d != 0 {
			t.Fatalf("retryAfter(%q) = %v without ok", h, d)
		}
		// Deterministic for a fixed now, and it leaves the header alone.
		before := h.Clone()
		if d2, ok2 := retryAfter(h, now); d2 != d || ok2 != ok {
			t.Fatalf("retryAfter(%q) gave %v %v, then %v %v", h, d, ok, d2, ok2)
		}
		for k, v := range before {
			if strings.Join(h[k], "\x00") != strings.Join(v, "\x00") {
				t.Fatalf("retryAfter changed header %s from %q to %q", k, v, h[k])
			}
		}

		// A decimal value means what it says, capped at a day; the first one in Azure's order wins.
		for _, hv := range []struct {
			v    string
			unit time.Duration
		}{{h.Get("Retry-After-Ms"), time.Millisecond}, {h.Get("X-Ms-Retry-After-Ms"), time.Millisecond}, {h.Get("Retry-After"), time.Second}} {
			want, isDecimal := expectedDelay(hv.v, hv.unit)
			if v := strings.TrimSpace(hv.v); !isDecimal && (v == "" || v[0] < '0' || v[0] > '9') {
				continue // absent, or plainly not a delay (a sign, a word, a date): the next header decides
			}
			if !isDecimal {
				return // an exponent, a hex float, a unit: whether it counts is the parser's choice
			}
			// Exact, to the nanosecond, fractions too.
			if !ok || d != want {
				t.Fatalf("retryAfter(%q) = %v %v; %q in units of %v means %v", h, d, ok, hv.v, hv.unit, want)
			}
			return
		}
		if asDate != 0 && h.Get("Retry-After-Ms") == "" && h.Get("X-Ms-Retry-After-Ms") == "" {
			// An HTTP date: the time until it, capped at a day; nothing when it is past.
			want := time.Duration(dateOffset) * time.Second
			switch {
			case want < 0 && ok:
				t.Fatalf("retryAfter(%q) = %v for a date %v in the past", h, d, -want)
			case want >= 0 && (!ok || d != min(want, maxRetryAfter)):
				t.Fatalf("retryAfter(%q) = %v %v for a date %v ahead", h, d, ok, want)
			}
		}
	})
}

// TestRetryAfterBeyondFloat64IsCapped: a delay too large for a float64 (over 309 digits) is capped at a day, as
// 1e300 is; it was once ignored. The fuzzer's input: an x-ms-retry-after-ms of 310 digits and a retry-after date
// of now gave 0 s instead of a day.
func TestRetryAfterBeyondFloat64IsCapped(t *testing.T) {
	huge := "17977" + strings.Repeat("0", 305)
	for _, h := range []http.Header{
		{"Retry-After-Ms": {"A"}, "X-Ms-Retry-After-Ms": {huge}, "Retry-After": {"Sunday, 22-Nov-26 10:00:00 UTC"}},
		{"Retry-After": {huge}},
		{"Retry-After-Ms": {huge}, "Retry-After": {"0"}},
	} {
		if d, ok := retryAfter(h, fuzzRetryNow); !ok || d != maxRetryAfter {
			t.Errorf("retryAfter(%.60q…) = %v %v, want %v", h, d, ok, maxRetryAfter)
		}
	}
}
