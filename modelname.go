package failover

import (
	"errors"
	"fmt"
	"time"
)

// A request's model name is the caller's to choose, and it becomes a key of each region's per-model state (rests,
// quotas, latencies), a path segment of an Azure URL, and a field of log lines and errors. A name is therefore
// bounded in length before any of those holds it, and the state it keys is bounded in bytes as well as in entries.

// MaxModelNameBytes is the longest model name a request may give, in its body's "model" or an Azure path's
// deployment, in bytes: a longer one is refused with 400 before any region, state or log line sees it. Real names
// are far shorter: an Azure deployment name has at most 64 characters, an OpenAI model id is a few tens (a
// fine-tuned one, "ft:{base}:{organization}:{suffix of up to 64 characters}:{id}", stays well under 256).
const MaxModelNameBytes = 256

// errModelNameTooLong is the cause of a request refused for the length of its model name.
var errModelNameTooLong = errors.New("model name too long")

// checkModelName refuses a model name longer than MaxModelNameBytes. The error names the field and the limit and
// shows only the name's start: the name is the caller's, of any length, and errors are printed and logged.
func checkModelName(model string) error {
	if len(model) <= MaxModelNameBytes {
		return nil
	}
	return fmt.Errorf("failover: the request's \"model\" (or the deployment in its path) is %d bytes, starting %q; a model or deployment name may have at most %d bytes: %w",
		len(model), clipName(model, 32), MaxModelNameBytes, errModelNameTooLong)
}

// clipName is the first n bytes of name, cut back to a whole UTF-8 character, with "…" when it was cut.
func clipName(name string, n int) string {
	if len(name) <= n {
		return name
	}
	for n > 0 && name[n]&0xC0 == 0x80 { // a continuation byte: the cut would split a character
		n--
	}
	return name[:n] + "…"
}

// maxTrackedModelBytes bounds, per backend, the bytes of the model names its per-model state is keyed by (rests,
// quotas, latencies, each counted once per entry): with maxTrackedModels it bounds that state in bytes as well
// as entries, whatever the names. 64 KiB is 256 names of 64 bytes in every map, far more than a backend serves.
const maxTrackedModelBytes = 64 << 10

// maxTrackedModels bounds the per-model states of one backend: model names come from requests, and a caller
// sending many made-up names (each answered 404) must not grow the map without end.
const maxTrackedModels = 1024

// keyBytes is the bytes of the model name a key of per-model state holds.
func keyBytes[K comparable](key K) int {
	switch k := any(key).(type) {
	case string:
		return len(k)
	case latencyKind:
		return len(k.model)
	}
	return 0
}

// mapKeyBytes is the bytes of the model names m's keys hold. It is counted when a new key would be added, not kept
// up to date on every change: names are added rarely (once per model a backend sees), and the maps are small.
func mapKeyBytes[M ~map[K]V, K comparable, V any](m M) int {
	n := 0
	for k := range m {
		n += keyBytes(k)
	}
	return n
}

// full reports whether a map of per-model state has no room for key: maxTrackedModels entries, or names that
// would pass maxTrackedModelBytes with it.
func full[M ~map[K]V, K comparable, V any](m M, key K) bool {
	return len(m) >= maxTrackedModels || mapKeyBytes(m)+keyBytes(key) > maxTrackedModelBytes
}

// track adds a new entry for key to a map of one backend's per-model state, and returns it; nil when the map
// already holds maxTrackedModels entries, or its keys' names would pass maxTrackedModelBytes: keys come from
// requests' model names, and must not grow it without end.
func track[M ~map[K]*V, K comparable, V any](m *M, key K) *V {
	if full(*m, key) {
		return nil
	}
	if *m == nil {
		*m = make(M)
	}
	v := new(V)
	(*m)[key] = v
	return v
}

// setModelLocked records a model's rest and reports whether it did. When the map is full (maxTrackedModels
// entries, or names of maxTrackedModelBytes) it first forgets rests that are over, then, for a real rest, missing
// marks (made-up model names must not crowd out a real 429). A missing mark that finds no room is not recorded:
// the backend is then asked again for that model, which is safe. The caller holds h.mu.
func (h *health) setModelLocked(model string, r *rest, now time.Time) bool {
	if h.models == nil {
		h.models = make(map[string]*rest)
	}
	if _, ok := h.models[model]; ok {
		h.models[model] = r
		return true
	}
	used := mapKeyBytes(h.models)
	full := func() bool {
		return len(h.models) >= maxTrackedModels || used+len(model) > maxTrackedModelBytes
	}
	if full() {
		for m, old := range h.models {
			if !now.Before(old.until) && !old.probing {
				delete(h.models, m)
				used -= len(m)
			}
		}
		for m, old := range h.models {
			if !full() || r.kind == restMissing {
				break
			}
			if old.kind == restMissing {
				delete(h.models, m)
				used -= len(m)
			}
		}
		if full() {
			return false
		}
	}
	h.models[model] = r
	return true
}
