package failover

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
)

// scrub removes every backend's secret from an upstream error body, in case a misbehaving server or proxy echoes
// a key or token back. It runs only on error answers, so its cost is off the hot path. A JSON body is also
// checked as it will be read: a secret spelt with escapes ("\u0062…") shows plainly once go-openai decodes the
// message, so such a body goes on re-encoded without the escapes, and without the secret.
func (e *engine) scrub(data []byte) (scrubbed []byte, changed bool) {
	data, changed = e.scrubBytes(data)
	if bytes.IndexByte(data, '\\') >= 0 {
		if plain, ok := withoutEscapes(data); ok {
			if clean, found := e.scrubBytes(plain); found {
				return clean, true
			}
		}
	}
	return data, changed
}

// scrubBytes removes every backend's secret from data as it is spelt there.
func (e *engine) scrubBytes(data []byte) (scrubbed []byte, changed bool) {
	e.eachSecret(func(secret string) {
		if bytes.Contains(data, []byte(secret)) {
			data, changed = bytes.ReplaceAll(data, []byte(secret), []byte(redacted)), true
		}
	})
	return data, changed
}

// withoutEscapes re-encodes a JSON value so that its strings hold their characters rather than escapes; false
// when data is not one JSON value.
func withoutEscapes(data []byte) ([]byte, bool) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if dec.Decode(&v) != nil || dec.More() {
		return nil, false
	}
	var out bytes.Buffer
	enc := json.NewEncoder(&out)
	enc.SetEscapeHTML(false)
	if enc.Encode(v) != nil {
		return nil, false
	}
	return bytes.TrimSuffix(out.Bytes(), []byte("\n")), true
}

// scrubHeader redacts, in place, every backend's secret from the headers of an error answer: they end up in
// attempts and errors, which are printed.
func (e *engine) scrubHeader(h http.Header) {
	e.eachSecret(func(secret string) {
		for _, values := range h {
			for i, v := range values {
				if strings.Contains(v, secret) {
					values[i] = strings.ReplaceAll(v, secret, redacted)
				}
			}
		}
	})
}

// eachSecret calls f with every key, and the current and previous token of every credential.
func (e *engine) eachSecret(f func(secret string)) {
	for _, b := range e.backends {
		if b.secret != "" {
			f(b.secret)
		}
		if b.tokens != nil {
			for _, token := range b.tokens.secrets() {
				if token != "" {
					f(token)
				}
			}
		}
	}
}
