package failover

import (
	"errors"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// maxRetryAfter caps a server's Retry-After. Azure sends up to a day (86400 s); anything longer is treated as a
// day, which also keeps absurd values from overflowing a time.Duration.
const maxRetryAfter = 24 * time.Hour

// retryAfter reads how long a server asked to be left alone, in the order Azure's own SDKs read it:
// retry-after-ms, x-ms-retry-after-ms (milliseconds), then retry-after (seconds, possibly fractional, or an HTTP
// date, measured from now). The first header that parses wins; a negative, unparsable or past value is ignored.
func retryAfter(h http.Header, now time.Time) (time.Duration, bool) {
	for _, name := range [...]string{"Retry-After-Ms", "X-Ms-Retry-After-Ms"} {
		if d, ok := parseDelay(h.Get(name), time.Millisecond); ok {
			return d, true
		}
	}
	v := strings.TrimSpace(h.Get("Retry-After"))
	if d, ok := parseDelay(v, time.Second); ok {
		return d, true
	}
	if at, err := http.ParseTime(v); err == nil {
		if d := at.Sub(now); d >= 0 {
			return min(d, maxRetryAfter), true
		}
	}
	return 0, false
}

// parseDelay reads a non-negative decimal number of units, such as "6", "1.5" or "250".
func parseDelay(v string, unit time.Duration) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" || v[0] < '0' || v[0] > '9' { // rejects signs, "Inf", "NaN" and HTTP dates alike
		return 0, false
	}
	if d, ok := exactDelay(v, unit); ok {
		return d, true
	}
	f, err := strconv.ParseFloat(v, 64)
	if ne := (*strconv.NumError)(nil); errors.As(err, &ne) && ne.Err == strconv.ErrRange {
		err = nil // too many digits for a float64: a very long delay (or, as 1e-400, none), not garbage
	}
	if err != nil || math.IsNaN(f) {
		return 0, false
	}
	if math.IsInf(f, 1) || f*float64(unit) >= float64(maxRetryAfter) {
		return maxRetryAfter, true
	}
	return time.Duration(f * float64(unit)), true
}

// exactDelay reads digits with an optional fraction ("17.1002", as Azure writes a delay) exactly, truncated to
// the nanosecond and capped at maxRetryAfter: through a float64, such a fraction can come out a nanosecond
// either side. It reports false for anything else (an exponent, a hex float), which parseDelay reads as a float.
func exactDelay(v string, unit time.Duration) (time.Duration, bool) {
	whole, frac, dotted := strings.Cut(v, ".")
	if !allDigits(whole) || dotted && !allDigits(frac) {
		return 0, false
	}
	whole = strings.TrimLeft(whole, "0")
	n, err := strconv.ParseInt("0"+whole, 10, 64)
	if err != nil || time.Duration(n) >= maxRetryAfter/unit { // a day or more, or more than an int64 holds
		return maxRetryAfter, true
	}
	d := time.Duration(n) * unit
	for i, scale := 0, unit/10; i < len(frac) && scale > 0; i, scale = i+1, scale/10 {
		d += time.Duration(frac[i]-'0') * scale
	}
	return min(d, maxRetryAfter), true
}

// allDigits reports whether s is one or more ASCII digits.
func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
