package failover

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

// TestRouteOf: how each path is routed, in every shape.
func TestRouteOf(t *testing.T) {
	cases := []struct {
		path string
		want route
		ok   bool
	}{
		{"/v1/chat/completions", route{kind: opFailover, op: "/chat/completions"}, true},
		{"/openai/deployments/chat/completions", route{kind: opFailover, op: "/completions"}, true},
		{"/openai/deployments/whisper/audio/transcriptions", route{kind: opFailover, op: "/audio/transcriptions"}, true},
		{"/openai/v1/images/generations", route{kind: opFailover, op: "/images/generations"}, true},
		{"/openai/responses", route{kind: opFailover, op: "/responses"}, true},
		{"/openai/v1/responses/resp_1", route{kind: opStored, op: "/responses/resp_1", id: "resp_1"}, true},
		{"/v1/responses/resp_1/cancel", route{kind: opStored, op: "/responses/resp_1/cancel", id: "resp_1"}, true},
		{"/v1/responses/resp_1/input_items", route{kind: opStored, op: "/responses/resp_1/input_items", id: "resp_1"}, true},
		{"/v1/responses/resp_1/other", route{}, false},
		{"/v1/files", route{kind: opPinned, op: "/files"}, true},
		{"/openai/files/file-1/content", route{kind: opPinned, op: "/files/file-1/content", id: "file-1"}, true},
		{"/v1/batches/batch_1/cancel", route{kind: opPinned, op: "/batches/batch_1/cancel", id: "batch_1"}, true},
		{"/v1/batches/batch_1/results", route{}, false},
		{"/v1/models", route{kind: opLocal, op: "/models"}, true},
		{"/v1/models/gpt-4o", route{}, false},
		{"/v1/files/..", route{}, false},
		{"/v1/fine_tuning/jobs", route{}, false},
		{"/", route{}, false},
		{"", route{}, false},
	}
	for _, tc := range cases {
		got, ok := routeOf(tc.path)
		assert.Equal(t, tc.ok, ok, tc.path)
		assert.Equal(t, tc.want, got, tc.path)
	}
}

// TestObjectURL: where an object path goes on each surface, with the caller's query and the api-version each
// needs.
func TestObjectURL(t *testing.T) {
	classic := &backend{scheme: "https", host: "east.example", surface: surfaceClassic, version: "2024-10-21"}
	v1 := &backend{scheme: "https", host: "west.example", path: "/openai/v1", surface: surfaceV1}
	cases := []struct {
		b                    *backend
		rest, query, version string
		want                 string
	}{
		{classic, "/files", "purpose=batch&api-version=2024-06-01", "2024-06-01", "https://east.example/openai/files?purpose=batch&api-version=2024-10-21"},
		{classic, "/files", "", "2025-01-01", "https://east.example/openai/files?api-version=2025-01-01"},
		{classic, "/responses/resp_1", "", "", "https://east.example/openai/responses/resp_1?api-version=2025-04-01-preview"},
		{classic, "/responses/resp_1", "", "2025-06-01-preview", "https://east.example/openai/responses/resp_1?api-version=2025-06-01-preview"},
		{classic, "/responses/resp_1", "", "2025-06-01", "https://east.example/openai/responses/resp_1?api-version=2025-04-01-preview"},
		{v1, "/responses/resp_1/input_items", "limit=5&api-version=2025-04-01-preview", "2025-04-01-preview", "https://west.example/openai/v1/responses/resp_1/input_items?limit=5"},
		{v1, "/files/file%2F1", "", "", "https://west.example/openai/v1/files/file%2F1"},
	}
	for _, tc := range cases {
		assert.Equal(t, tc.want, tc.b.objectURL(tc.rest, tc.query, tc.version).String(), tc.rest)
	}
}
