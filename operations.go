package failover

import (
	"slices"
	"strings"
)

// What a request asks for, read from the end of its path (the host and the base path are the caller's; each
// backend has its own): an operation that fails over, one about an object stored in one region, one pinned to a
// region, or one the Client answers itself.

// opKind is how an operation is routed.
type opKind uint8

const (
	// opFailover goes to the backends in order until one serves it (failover.go).
	opFailover opKind = iota
	// opStored is about a stored response: it goes to the backend that made it (direct.go).
	opStored
	// opPinned is a file or batch operation: it goes to one backend and is never failed over (direct.go).
	opPinned
	// opLocal is answered by the Client itself: the model list (direct.go).
	opLocal
)

// failoverOps are the operations that fail over: each exists on every Azure deployment and in the OpenAI API.
// The longer of two that share an ending comes first.
var failoverOps = []string{"/chat/completions", "/completions", "/embeddings", "/images/generations",
	"/audio/speech", "/audio/transcriptions", "/audio/translations", "/responses"}

// route is what a request asks for.
type route struct {
	kind opKind
	// op is, for a failover operation, the operation ("/chat/completions"); for the others, the object's path
	// below the surface's root, as the caller escaped it ("/responses/resp_1/cancel", "/files", "/models").
	op string
	// id is the stored object the path names (a response, a file, a batch), if any.
	id string
}

// routeOf reads what a request for path (escaped as the caller sent it) asks for.
func routeOf(path string) (route, bool) {
	if op, ok := operationOf(path); ok {
		return route{kind: opFailover, op: op}, true
	}
	segs := strings.Split(path, "/")
	for i := len(segs) - 1; i >= max(len(segs)-3, 1); i-- {
		rest := segs[i+1:]
		var kind opKind
		switch segs[i] {
		case "responses": // /responses/{id}, /responses/{id}/cancel, /responses/{id}/input_items
			if len(rest) == 0 || len(rest) == 2 && rest[1] != "cancel" && rest[1] != "input_items" {
				continue
			}
			kind = opStored
		case "files": // /files, /files/{id}, /files/{id}/content
			if len(rest) == 2 && rest[1] != "content" {
				continue
			}
			kind = opPinned
		case "batches": // /batches, /batches/{id}, /batches/{id}/cancel
			if len(rest) == 2 && rest[1] != "cancel" {
				continue
			}
			kind = opPinned
		case "models":
			if len(rest) != 0 {
				continue
			}
			kind = opLocal
		default:
			continue
		}
		r := route{kind: kind, op: "/" + strings.Join(segs[i:], "/")}
		if len(rest) > 0 {
			if r.id = rest[0]; r.id == "" || r.id == "." || r.id == ".." {
				return route{}, false
			}
		}
		return r, true
	}
	return route{}, false
}

// operationOf is the failover operation a request's path ends in. In a classic Azure path it is what follows the
// deployment: /openai/deployments/chat/completions is the legacy completions of a deployment named chat.
func operationOf(path string) (string, bool) {
	if i := strings.LastIndex(path, classicPrefix); i >= 0 {
		rest := path[i+len(classicPrefix):]
		if j := strings.IndexByte(rest, '/'); j > 0 && slices.Contains(failoverOps, rest[j:]) {
			return rest[j:], true
		}
	}
	for _, op := range failoverOps {
		if strings.HasSuffix(path, op) {
			return op, true
		}
	}
	return "", false
}

// isAudioUpload reports whether op takes a multipart form (with the model as a field) rather than JSON.
func isAudioUpload(op string) bool {
	return op == "/audio/transcriptions" || op == "/audio/translations"
}
