package failover

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
)

// The logical request's body: read once (or replayed through its GetBody), sent again to every backend tried,
// and scanned for the model it names (and, in estimate.go, for what it may cost).

// maxBody bounds a request body and a successful non-streaming answer (a large embeddings batch is tens of MiB).
const maxBody = 256 << 20

var errBodyTooLarge = errors.New("body too large")

// requestBody gives each attempt a fresh copy of the logical request's body.
type requestBody struct {
	get    func() (io.ReadCloser, error)
	length int64
	data   []byte // the bytes, when they are in memory; nil when only get has them
}

// replayable prepares req's body for replay and finds the model it names. A body that can already be replayed
// (go-openai's can: its GetBody reads the bytes it marshalled) is not copied: only its start is read, where
// go-openai writes the model.
func replayable(req *http.Request) (requestBody, string, error) {
	if req.Body == nil || req.Body == http.NoBody {
		return requestBody{}, "", errors.New("failover: request has no body")
	}
	if req.GetBody != nil && req.ContentLength > 0 {
		req.Body.Close()
		if req.ContentLength > maxBody {
			return requestBody{}, "", fmt.Errorf("failover: request body: %w", errBodyTooLarge)
		}
		head, err := readBody(req.GetBody, min(req.ContentLength, 256))
		if err != nil {
			return requestBody{}, "", err
		}
		if model, ok := leadingModel(head); ok {
			return requestBody{get: req.GetBody, length: req.ContentLength}, model, nil
		}
		// Another SDK's body (openai-go writes the model after the messages): scanned whole. One of at most
		// maxScanned bytes is kept for the estimate too; every attempt still replays the caller's GetBody.
		all := head
		if int64(len(head)) < req.ContentLength {
			if all, err = readBody(req.GetBody, req.ContentLength); err != nil {
				return requestBody{}, "", err
			}
		}
		b := requestBody{get: req.GetBody, length: req.ContentLength}
		if req.ContentLength <= maxScanned {
			b.data = all
		}
		return b, modelOf(all), nil
	}
	data, err := readAll(nil, req.Body, req.ContentLength, maxBody, nil)
	req.Body.Close()
	if err != nil {
		return requestBody{}, "", fmt.Errorf("failover: reading request body: %w", err)
	}
	return bytesBody(data), modelOf(data), nil
}

// bytesBody replays data.
func bytesBody(data []byte) requestBody {
	get := func() (io.ReadCloser, error) {
		// A NopCloser around a *bytes.Reader is a body net/http knows will not block, so it sends headers and
		// body in one write instead of two (go-openai's bodies are the same).
		return io.NopCloser(bytes.NewReader(data)), nil
	}
	return requestBody{get: get, length: int64(len(data)), data: data}
}

// readBody reads the first n bytes of a fresh copy of a body (all of it when n is its length).
func readBody(getBody func() (io.ReadCloser, error), n int64) ([]byte, error) {
	rc, err := getBody()
	if err != nil {
		return nil, fmt.Errorf("failover: reading request body: %w", err)
	}
	defer rc.Close()
	data := make([]byte, n) // n is at most maxBody: replayable checked ContentLength
	if _, err := io.ReadFull(rc, data); err != nil {
		return nil, fmt.Errorf("failover: reading request body: %w", err)
	}
	return data, nil
}

var errNoModelInRequest = errors.New("failover: request names no model: neither its JSON body nor an Azure path (/openai/deployments/{deployment}/…)")

// pathDeployment is the deployment of an Azure-shaped path, /…/openai/deployments/{deployment}{op}, or "". A
// request that names its model only there (an Azure client's) is routed by it.
func pathDeployment(path, op string) string {
	rest, ok := strings.CutSuffix(path, op)
	if !ok {
		return ""
	}
	i := strings.LastIndex(rest, classicPrefix)
	if i < 0 {
		return ""
	}
	d := rest[i+len(classicPrefix):]
	if strings.Contains(d, "/") {
		return ""
	}
	return d
}

// bodyFor is the body to send b: the request's, or, for a backend that reads the model from the body (v1,
// OpenAI-compatible, the fallback), a copy with b's name for the model written in when the body names another
// one or none (a request that named its model only in an Azure path).
func (c *request) bodyFor(b *backend) (requestBody, error) {
	if !b.bodyNamesDeployment(c.op) {
		return c.body, nil
	}
	name := b.deployment(c.model)
	switch {
	case !c.pathModel && name == c.model:
		return c.body, nil
	case isAudioUpload(c.op):
		data, err := withMultipartModel(c.body.data, c.req.Header.Get("Content-Type"), name)
		if err != nil {
			return requestBody{}, fmt.Errorf("failover: the request's form: %w", err)
		}
		return bytesBody(data), nil
	}
	return withModel(c.body, name)
}

// withModel is body with its "model" member set to model: replaced where the body has one (empty, null), else
// written in as its first member. body must be a JSON object.
func withModel(body requestBody, model string) (requestBody, error) {
	data, err := readBody(body.get, body.length)
	if err != nil {
		return requestBody{}, err
	}
	name, _ := json.Marshal(model) // a string always marshals
	start, end, found, err := modelMember(data)
	if err != nil {
		return requestBody{}, err
	}
	out := make([]byte, 0, len(data)+len(name)+11)
	if found {
		out = append(append(append(out, data[:start]...), name...), data[end:]...)
		return bytesBody(out), nil
	}
	rest := bytes.TrimLeft(data, " \t\r\n")[1:] // after '{': modelMember checked it is there
	out = append(out, `{"model":`...)
	out = append(out, name...)
	if trimmed := bytes.TrimLeft(rest, " \t\r\n"); len(trimmed) > 0 && trimmed[0] != '}' {
		out = append(out, ',')
	}
	return bytesBody(append(out, rest...)), nil
}

var errNotObject = errors.New("failover: request body is not a JSON object")

// modelMember finds the value of the top-level "model" member of the JSON object data: its byte offsets, and
// whether there is one.
func modelMember(data []byte) (start, end int, found bool, err error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return 0, 0, false, errNotObject
	}
	for dec.More() {
		key, err := dec.Token()
		if err != nil {
			return 0, 0, false, errNotObject
		}
		var value json.RawMessage
		if err := dec.Decode(&value); err != nil {
			return 0, 0, false, errNotObject
		}
		if key == "model" {
			end := int(dec.InputOffset())
			return end - len(value), end, true, nil
		}
	}
	return 0, 0, false, nil
}

// leadingModel reads the model from a body that starts with it, as go-openai writes chat requests, without a
// JSON parse.
func leadingModel(body []byte) (string, bool) {
	const prefix = `{"model":"`
	if !bytes.HasPrefix(body, []byte(prefix)) {
		return "", false
	}
	rest := body[len(prefix):]
	end := bytes.IndexByte(rest, '"')
	if end < 0 || bytes.IndexByte(rest[:end], '\\') >= 0 {
		return "", false
	}
	return string(rest[:end]), true
}

// scanBuffers recycles the copies of request bodies read to estimate their tokens.
var scanBuffers = sync.Pool{New: func() any { return new(tail) }}

// readBodyBytes calls f with the bytes of a request body: in place when they are in memory, else read through
// its GetBody into a pooled buffer, which f must not keep. Of a body that is only known by its GetBody and is
// larger than maxScanned, f gets the last maxScanned bytes, where go-openai writes max_tokens (after the messages),
// and the first maxHead as head (where SDKs that write "stream" before the messages write it); the body is not
// held whole a second time. head is nil when data is the whole body. It reports false when the body could not be
// read.
func readBodyBytes(body requestBody, f func(head, data []byte)) bool {
	if body.data != nil {
		f(nil, body.data)
		return true
	}
	rc, err := body.get()
	if err != nil {
		return false
	}
	defer rc.Close()
	t := scanBuffers.Get().(*tail)
	defer scanBuffers.Put(t)
	t.data, t.head, t.total = t.data[:0], t.head[:0], 0
	if _, err := io.Copy(t, rc); err != nil { // a bytes.Reader (go-openai's) writes itself in one piece
		return false
	}
	if t.total > maxScanned {
		f(t.head, t.data)
	} else {
		f(nil, t.data)
	}
	return true
}

// maxScanned is the most of a request body that is read to estimate its tokens (see readBodyBytes).
const maxScanned = 64 << 10

// maxHead is how much of the start of a long body readBodyBytes keeps besides its end.
const maxHead = 4 << 10

// tail keeps the last maxScanned bytes written to it, and the first maxHead.
type tail struct {
	data  []byte
	head  []byte
	total int64
}

func (t *tail) Write(p []byte) (int, error) {
	t.total += int64(len(p))
	if len(t.head) < maxHead {
		t.head = append(t.head, p[:min(maxHead-len(t.head), len(p))]...)
	}
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

func closeBody(req *http.Request) {
	if req.Body != nil {
		req.Body.Close()
	}
}
