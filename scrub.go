package failover

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"math"
	"net/http"
	"slices"
	"strings"
	"sync"
)

// scrub removes every backend's secret from an upstream error body, in case a misbehaving server or proxy echoes
// a key or token back, in any of the spellings secretForms lists. It runs on error answers and error events, so
// its cost is off the hot path. A JSON body is also checked as it will be read: a secret spelt with escapes
// ("\u0062…") shows plainly once go-openai decodes the message, so such a body goes on re-encoded without the
// escapes, and without the secret.
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
	set := e.scrubSet()
	if len(data) < set.shortest {
		return data, false
	}
	for _, form := range set.bytes {
		if bytes.Contains(data, form) {
			data, changed = bytes.ReplaceAll(data, form, []byte(redacted)), true
		}
	}
	return data, changed
}

// partialData reports whether the data of a chat stream's data line may be part of an event whose data spans
// several lines (SSE joins them with "\n"), so that the line must be scrubbed as it stands: it does not start with
// '{' and end with '}', as a chunk does, or it names an error member without being an error event. Chunks are
// neither, so that the scrub stays off their path.
func partialData(data []byte) bool {
	return len(data) > 0 && (data[0] != '{' || data[len(data)-1] != '}' || hasErrorMember(data))
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

// scrubHeader redacts, in place, every backend's secret from the headers of an answer, served or failed: a failed
// one's end up in attempts and errors, which are printed, and a served one's reach the caller.
func (e *engine) scrubHeader(h http.Header) {
	set := e.scrubSet()
	for _, values := range h {
		for i, v := range values {
			if len(v) < set.shortest {
				continue // most values are shorter than any secret's spelling
			}
			for _, form := range set.forms {
				if strings.Contains(v, form) {
					v = strings.ReplaceAll(v, form, redacted)
					values[i] = v
				}
			}
		}
	}
}

// appendSecrets appends every key, and the current and previous token of every credential, to dst.
func (e *engine) appendSecrets(dst []string) []string {
	for _, b := range e.backends {
		if b.secret != "" {
			dst = append(dst, b.secret)
		}
		if b.tokens != nil {
			for _, token := range b.tokens.secrets() {
				if token != "" {
					dst = append(dst, token)
				}
			}
		}
	}
	return dst
}

// scrubSet is every spelling of the secrets of one moment (see secretForms), the longer spellings of a secret
// first, so that a whole encoding is redacted whole rather than around its core.
type scrubSet struct {
	secrets  []string // what it was made of, in appendSecrets's order
	forms    []string
	bytes    [][]byte // forms, as bytes
	shortest int      // the length of the shortest form: shorter text holds none
}

// scrubCache holds the current scrubSet, and each secret's spellings, computed once: keys are fixed, and an
// Entra ID token is used for an hour, so that a scrub costs the searches alone. Its zero value is ready.
type scrubCache struct {
	mu    sync.Mutex
	set   *scrubSet
	forms map[string][]string // by secret
}

// maxCachedSecrets bounds the cache of spellings: tokens come and go (two per credential are current), and the
// cache starts over when it holds this many, keeping none of the old ones alive.
const maxCachedSecrets = 256

// scrubSet is the set of the current secrets: the cached one while they are the same.
func (e *engine) scrubSet() *scrubSet {
	var buf [16]string
	current := e.appendSecrets(buf[:0])
	c := &e.scrubs
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.set != nil && slices.Equal(c.set.secrets, current) {
		return c.set
	}
	if c.forms == nil || len(c.forms) >= maxCachedSecrets {
		c.forms = make(map[string][]string)
	}
	set := &scrubSet{secrets: slices.Clone(current), shortest: math.MaxInt}
	for _, secret := range current {
		forms, ok := c.forms[secret]
		if !ok {
			forms = secretForms(secret)
			c.forms[secret] = forms
		}
		for _, form := range forms {
			set.forms = append(set.forms, form)
			set.bytes = append(set.bytes, []byte(form))
			set.shortest = min(set.shortest, len(form))
		}
	}
	c.set = set
	return set
}

// minEncodedForm is the shortest base64 spelling that is scrubbed: a shorter one would match by chance. Keys and
// tokens are far longer (a key's encodings are over 40 characters).
const minEncodedForm = 12

// secretForms are the spellings of secret that are scrubbed, longest first: secret itself; its standard and
// URL-safe base64 encodings, padded and not; and, for each alphabet, the characters that encode secret alone when
// it is embedded at any alignment in a longer encoded value ("Basic " + base64("user:" + key), a token's
// payload). Base64 encodes 3 bytes as 4 characters, so that a secret after 0, 1 or 2 other bytes is spelt three
// different ways; at each alignment the characters at its edges also hold bits of the bytes around it, and are
// left out, as are those of the padded encoding's last group. What is left of the secret is at most the 2
// characters at each edge, fewer than 2 bytes of it.
func secretForms(secret string) []string {
	forms := []string{secret}
	add := func(form string) {
		for _, f := range forms {
			if f == form {
				return
			}
		}
		if len(form) >= minEncodedForm {
			forms = append(forms, form)
		}
	}
	n := len(secret)
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding} {
		add(enc.EncodeToString([]byte(secret)))
		add(enc.WithPadding(base64.NoPadding).EncodeToString([]byte(secret)))
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding} {
		for offset := range 3 {
			full := enc.WithPadding(base64.NoPadding).EncodeToString(append(make([]byte, offset, offset+n), secret...))
			// Character i encodes bits [6i, 6i+6); the secret's are [8·offset, 8·(offset+n)).
			start, end := (8*offset+5)/6, 8*(offset+n)/6
			add(full[start:end])
		}
	}
	return forms
}
