package failover

import (
	"io"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestPathDeployment(t *testing.T) {
	for _, tc := range []struct{ path, op, want string }{
		{"/openai/deployments/gpt-4o/chat/completions", "/chat/completions", "gpt-4o"},
		{"/base/openai/deployments/emb-3/embeddings", "/embeddings", "emb-3"},
		{"/v1/chat/completions", "/chat/completions", ""},
		{"/openai/deployments//chat/completions", "/chat/completions", ""},
		{"/openai/deployments/a/b/chat/completions", "/chat/completions", ""},
		{"/openai/deployments/gpt-4o/embeddings", "/chat/completions", ""},
	} {
		assert.Equal(t, tc.want, pathDeployment(tc.path, tc.op), tc.path)
	}
}

func TestWithModel(t *testing.T) {
	for _, tc := range []struct{ body, want string }{
		{`{"messages":[]}`, `{"model":"gpt-4o","messages":[]}`},
		{` { "input": "x" }`, `{"model":"gpt-4o", "input": "x" }`},
		{`{}`, `{"model":"gpt-4o"}`},
		{"{\n}", "{\"model\":\"gpt-4o\"\n}"},
	} {
		out, err := withModel(bytesBody([]byte(tc.body)), "gpt-4o")
		require.NoError(t, err)
		rc, err := out.get()
		require.NoError(t, err)
		got, _ := io.ReadAll(rc)
		assert.Equal(t, tc.want, string(got))
		assert.Equal(t, int64(len(tc.want)), out.length)
	}
	for _, bad := range []string{``, `[1]`, `"x"`} {
		_, err := withModel(bytesBody([]byte(bad)), "m")
		assert.ErrorContains(t, err, "not a JSON object", bad)
	}
	out, err := withModel(bytesBody([]byte(`{}`)), `we"ird`)
	require.NoError(t, err)
	rc, _ := out.get()
	got, _ := io.ReadAll(rc)
	assert.JSONEq(t, `{"model":"we\"ird"}`, string(got), "the model is escaped as JSON")
}

func TestAzureRegionsNeverGetAModelWithASlash(t *testing.T) {
	azure, v1, openai := &backend{}, &backend{surface: surfaceV1}, &backend{surface: surfaceOpenAI}
	assert.False(t, azure.serves("meta-llama/Llama-3"), "it would be a path segment")
	assert.True(t, azure.serves("gpt-4o"))
	assert.True(t, v1.serves("meta-llama/Llama-3"), "the v1 surface reads it from the body")
	assert.True(t, openai.serves("meta-llama/Llama-3"), "the public API reads it from the body")
}
