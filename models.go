package failover

import (
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
)

// models answers a model list from the models the regions are configured with, without asking a region: each
// region's list is its own (deployment names, not models) and a caller of the Client asks for models.
func (e *engine) models(req *http.Request) *http.Response {
	type model struct {
		ID      string `json:"id"`
		Object  string `json:"object"`
		Created int64  `json:"created"`
		OwnedBy string `json:"owned_by"`
	}
	list := struct {
		Object string  `json:"object"`
		Data   []model `json:"data"`
	}{Object: "list", Data: []model{}}
	var names []string
	for _, b := range e.backends {
		for name := range b.deployments {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	for _, name := range slices.Compact(names) {
		list.Data = append(list.Data, model{ID: name, Object: "model", OwnedBy: "failover"})
	}
	data, _ := json.Marshal(list) // strings only: cannot fail
	h := http.Header{"Content-Type": {"application/json"}, "Content-Length": {strconv.Itoa(len(data))}}
	return &http.Response{Status: "200 OK", StatusCode: http.StatusOK, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: h, Body: newBodyReader(data), ContentLength: int64(len(data)), Request: req}
}
