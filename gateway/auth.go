package gateway

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strings"
)

// keyring holds the gateway keys as SHA-256 digests: comparing digests makes the comparison's time independent of
// both the keys' lengths and where a guess first differs, and keeps the keys themselves out of memory dumps of it.
type keyring [][sha256.Size]byte

func newKeyring(keys []string) keyring {
	k := make(keyring, len(keys))
	for i, key := range keys {
		k[i] = sha256.Sum256([]byte(key))
	}
	return k
}

// admits reports whether r carries one of the keys, in an api-key header or as Authorization: Bearer. Every key is
// compared, in constant time, whichever matches.
func (k keyring) admits(r *http.Request) bool {
	given, ok := presentedKey(r)
	if !ok {
		return false
	}
	digest := sha256.Sum256([]byte(given))
	match := 0
	for i := range k {
		match |= subtle.ConstantTimeCompare(digest[:], k[i][:])
	}
	return match == 1
}

// presentedKey is the key a caller sent: api-key (as Azure clients send it) or a bearer token (as OpenAI clients
// do).
func presentedKey(r *http.Request) (string, bool) {
	if key := r.Header.Get("Api-Key"); key != "" {
		return key, true
	}
	auth := r.Header.Get("Authorization")
	if len(auth) > len("Bearer ") && strings.EqualFold(auth[:len("Bearer ")], "Bearer ") {
		return strings.TrimSpace(auth[len("Bearer "):]), true
	}
	return "", false
}
