package gateway_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aoai-failover/failover"
	"github.com/aoai-failover/failover/failovertest"
	"github.com/aoai-failover/failover/gateway"
	openai "github.com/sashabaranov/go-openai"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// nodeDir holds client.mjs and the pinned openai npm package it uses.
var nodeDir = filepath.Join("testdata", "npm")

// nodeLine is one line client.mjs prints: the outcome of one call.
type nodeLine struct {
	Class               string            `json:"class"`
	Op                  string            `json:"op"`
	Status              int               `json:"status"`
	Text                string            `json:"text"`
	Model               string            `json:"model"`
	Chunks              int               `json:"chunks"`
	Finish              string            `json:"finish"`
	Embedding           []float64         `json:"embedding"`
	Headers             map[string]string `json:"headers"`
	AuthenticationError bool              `json:"authenticationError"`
	Code                string            `json:"code"`
	Message             string            `json:"message"`
	// The Responses API's: the response's id, the previous_response_id it continues, its status, and for a
	// stream the types of its events in order and the text of its response.completed.
	ID                 string   `json:"id"`
	PreviousResponseID string   `json:"previousResponseId"`
	ResponseStatus     string   `json:"responseStatus"`
	Events             []string `json:"events"`
	CompletedText      string   `json:"completedText"`
}

// TestOfficialNodeClient runs the official openai npm package, both its OpenAI and its AzureOpenAI class, against
// the gateway in front of two fake regions, the first of which rate-limits the first request.
func TestOfficialNodeClient(t *testing.T) {
	node := requireNode(t)
	installNodeModules(t)

	// Regions are closed last: the gateway server first, so that no request is in flight, then the client's
	// connections.
	east := failovertest.NewRegion("eastus")
	defer east.Close()
	west := failovertest.NewRegion("swedencentral")
	defer west.Close()
	east.Script(failovertest.RateLimited(30 * time.Second)) // the first request only; gpt-4o then rests on eastus

	client, err := failover.New([]failover.Region{
		{Name: east.Name, Endpoint: east.URL, APIKey: east.Key},
		{Name: west.Name, Endpoint: west.URL, APIKey: west.Key},
	}, failover.WithMaxWait(0))
	require.NoError(t, err)
	defer client.CloseIdleConnections()
	key := "gw-npm-" + rand.Text()
	gw, err := gateway.New(client, gateway.Config{Keys: []string{key}})
	require.NoError(t, err)
	srv := httptest.NewServer(gw) // 127.0.0.1 only
	defer srv.Close()

	lines := runNodeClient(t, node, srv.URL, key, "chat")

	// What each class saw, call by call.
	const hello = "Hello from swedencentral." // failovertest's default answer, from the region that served
	got := make(map[string]nodeLine)
	for _, l := range lines {
		got[l.Class+" "+l.Op] = l
	}
	require.Contains(t, got, " done", "client.mjs ran to its end")
	for _, cls := range []string{"OpenAI", "AzureOpenAI"} {
		chat, stream, emb := got[cls+" chat"], got[cls+" stream"], got[cls+" embeddings"]
		require.NotEmpty(t, chat.Op, "%s chat line", cls)
		require.NotEmpty(t, stream.Op, "%s stream line", cls)
		require.NotEmpty(t, emb.Op, "%s embeddings line", cls)

		assert.Equal(t, 200, chat.Status, cls)
		assert.Equal(t, hello, chat.Text, "%s chat: the answer passes through whole", cls)
		assert.Equal(t, "gpt-4o", chat.Model, cls)
		assert.Equal(t, west.Name, chat.Headers["x-failover-region"], "%s chat: eastus rate-limited gpt-4o", cls)

		assert.Equal(t, 200, stream.Status, cls)
		assert.Equal(t, hello, stream.Text, "%s stream: the deltas add up to the answer", cls)
		assert.Equal(t, "stop", stream.Finish, cls)
		assert.Greater(t, stream.Chunks, 3, "%s stream: Azure's filter event, the role, words, the finish", cls)
		assert.Equal(t, west.Name, stream.Headers["x-failover-region"], "%s stream: gpt-4o still rests on eastus", cls)
		assert.Equal(t, "1", stream.Headers["x-failover-attempts"], "%s stream: the resting region is skipped, not tried", cls)

		assert.Equal(t, 200, emb.Status, cls)
		assert.Len(t, emb.Embedding, 8, "%s embeddings: failovertest's vectors have 8 dimensions", cls)
		assert.Equal(t, east.Name, emb.Headers["x-failover-region"], "%s embeddings: the 429 rested gpt-4o on eastus, not its other models", cls)
		assert.Equal(t, "1", emb.Headers["x-failover-attempts"], cls)

		wrong := got[cls+" wrong-key"]
		assert.Equal(t, 401, wrong.Status, "%s with a wrong key", cls)
		assert.True(t, wrong.AuthenticationError, "%s: a 401 is the package's AuthenticationError", cls)
		assert.Equal(t, "401", wrong.Code, cls)
	}
	assert.Equal(t, "2", got["OpenAI chat"].Headers["x-failover-attempts"], "the first call: eastus answered 429, swedencentral served")
	assert.Equal(t, "1", got["AzureOpenAI chat"].Headers["x-failover-attempts"], "gpt-4o rests on eastus for 30 s")
	assert.Equal(t, got["OpenAI embeddings"].Embedding, got["AzureOpenAI embeddings"].Embedding,
		"the same input gets the same vector through both classes")

	// What the regions saw: every call of each class, on the right deployment and operation, with the region's key
	// and never the gateway's.
	type want struct {
		op, deployment, userAgent string
		stream                    bool
		status                    int
	}
	const oai, azure = "OpenAI/JS ", "AzureOpenAI/JS "
	wantEast := []want{
		{"chat/completions", "gpt-4o", oai, false, 429},
		{"embeddings", "text-embedding-3-small", oai, false, 200},
		{"embeddings", "text-embedding-3-small", azure, false, 200},
	}
	wantWest := []want{
		{"chat/completions", "gpt-4o", oai, false, 200},
		{"chat/completions", "gpt-4o", oai, true, 200},
		{"chat/completions", "gpt-4o", azure, false, 200},
		{"chat/completions", "gpt-4o", azure, true, 200},
	}
	for _, r := range []struct {
		region *failovertest.Server
		want   []want
	}{{east, wantEast}, {west, wantWest}} {
		calls := r.region.Calls()
		require.Len(t, calls, len(r.want), "%s: the calls of both classes, in order; none for the wrong keys", r.region.Name)
		for i, c := range calls {
			w := r.want[i]
			where := fmt.Sprintf("%s call %d", r.region.Name, i)
			assert.Equal(t, w.op, c.Operation, where)
			assert.Equal(t, w.deployment, c.Deployment, where)
			assert.Equal(t, w.deployment, c.Model, where)
			assert.Equal(t, w.stream, c.Stream, where)
			assert.Equal(t, w.status, c.Status, where)
			version := failover.DefaultAPIVersion // the OpenAI class sends none: the region's own
			if w.userAgent == azure {
				version = "2024-12-01-preview" // newer than the region's: the caller's is kept (the region's is a floor)
			}
			assert.Equal(t, version, c.APIVersion, where)
			assert.True(t, strings.HasPrefix(c.Header.Get("User-Agent"), w.userAgent), "%s: User-Agent %q, want the %s class",
				where, c.Header.Get("User-Agent"), w.userAgent)
			assert.True(t, c.Authorized, where)
			assert.Equal(t, r.region.Key, c.Header.Get("Api-Key"), where)
			assert.Empty(t, c.Header.Get("Authorization"), "%s: the caller's Bearer token stays behind", where)
			for name, values := range c.Header {
				for _, v := range values {
					assert.NotContains(t, v, key, "%s: header %s carries the gateway key", where, name)
				}
			}
			assert.NotContains(t, string(c.Body), key, where)
			if w.op == "embeddings" {
				assert.Contains(t, string(c.Body), `"The quick brown fox"`, where)
				assert.Contains(t, string(c.Body), `"encoding_format":"base64"`, where)
			} else {
				assert.Contains(t, string(c.Body), `"Say hello."`, where)
			}
		}
	}

	// The package asked for base64 (its default) and decoded it: the vector is the one go-openai gets as floats,
	// to float32 precision. Last, as it adds a call at the regions.
	cfg := openai.DefaultConfig(key)
	cfg.BaseURL = srv.URL + "/v1"
	floats, err := openai.NewClientWithConfig(cfg).CreateEmbeddings(t.Context(), openai.EmbeddingRequestStrings{
		Model: "text-embedding-3-small", Input: []string{"The quick brown fox"}})
	require.NoError(t, err)
	require.Len(t, got["OpenAI embeddings"].Embedding, len(floats.Data[0].Embedding))
	for i, f := range floats.Data[0].Embedding {
		assert.InDelta(t, f, got["OpenAI embeddings"].Embedding[i], 1e-6, "dimension %d", i)
	}
}

// TestOfficialNodeClientResponses runs the official openai npm package's Responses API, through its OpenAI class
// (/v1/responses) and its AzureOpenAI class (/openai/responses?api-version=…), against the gateway in front of two
// fake regions: creates and streams, and follow-ups by previous_response_id of responses the second region made
// while the first was rate-limited, which only the second region can serve.
func TestOfficialNodeClientResponses(t *testing.T) {
	node := requireNode(t)
	installNodeModules(t)

	east := failovertest.NewRegion("eastus")
	defer east.Close()
	west := failovertest.NewRegion("swedencentral")
	defer west.Close()
	// eastus answers 429 to every first turn ("Say hello."), at the moment it is asked, and serves everything else.
	// The 429 has no Retry-After and the backoff is 0, so eastus never rests: every request finds it first in the
	// order and free, and only a response stored in swedencentral can send a request past it.
	east.SetReplier(func(c failovertest.Call) failovertest.Reply {
		var body struct {
			Input any `json:"input"`
		}
		if c.Operation == "responses" && json.Unmarshal(c.Body, &body) == nil && body.Input == "Say hello." {
			return failovertest.RateLimited(0)
		}
		return failovertest.Reply{}
	})

	client, err := failover.New([]failover.Region{
		{Name: east.Name, Endpoint: east.URL, APIKey: east.Key},
		{Name: west.Name, Endpoint: west.URL, APIKey: west.Key},
	}, failover.WithMaxWait(0), failover.WithBackoff(func(int) time.Duration { return 0 }),
		// The 429's x-ratelimit-remaining-*: 0 would otherwise steer gpt-4o away from eastus for a minute.
		failover.WithQuotaSteering(false))
	require.NoError(t, err)
	defer client.CloseIdleConnections()
	key := "gw-npm-" + rand.Text()
	gw, err := gateway.New(client, gateway.Config{Keys: []string{key}})
	require.NoError(t, err)
	srv := httptest.NewServer(gw) // 127.0.0.1 only
	defer srv.Close()

	lines := runNodeClient(t, node, srv.URL, key, "responses")

	// What each class saw, call by call. failovertest's default answer names the region that made it.
	const fromWest, fromEast = "Hello from swedencentral.", "Hello from eastus."
	got := make(map[string]nodeLine)
	for _, l := range lines {
		got[l.Class+" "+l.Op] = l
	}
	require.Contains(t, got, " done", "client.mjs ran to its end")
	classes := []string{"OpenAI", "AzureOpenAI"}
	var madeWest, madeEast []string // the ids of the responses each region made, in order
	for _, cls := range classes {
		first, stream := got[cls+" responses"], got[cls+" responses-stream"]
		follow, streamFollow := got[cls+" responses-followup"], got[cls+" responses-stream-followup"]
		fresh := got[cls+" responses-new"]
		for _, l := range []nodeLine{first, stream, follow, streamFollow, fresh} {
			require.NotEmpty(t, l.Op, "%s: a line for each Responses call", cls)
			where := cls + " " + l.Op
			assert.Equal(t, 200, l.Status, where)
			assert.Equal(t, "completed", l.ResponseStatus, where)
			assert.Equal(t, "gpt-4o", l.Model, where)
			assert.NotEmpty(t, l.ID, where)
		}
		madeWest = append(madeWest, first.ID, stream.ID, follow.ID, streamFollow.ID)
		madeEast = append(madeEast, fresh.ID)

		assert.Equal(t, fromWest, first.Text, "%s responses: the answer passes through whole", cls)
		assert.Empty(t, first.PreviousResponseID, cls)
		assert.Equal(t, west.Name, first.Headers["x-failover-region"], "%s responses: eastus rate-limited it", cls)
		assert.Equal(t, "2", first.Headers["x-failover-attempts"], "%s responses: eastus answered 429, swedencentral served", cls)

		assert.Equal(t, fromWest, stream.Text, "%s responses-stream: the deltas add up to the answer", cls)
		assert.Equal(t, stream.Text, stream.CompletedText, "%s responses-stream: response.completed holds what the deltas said", cls)
		assertResponseEvents(t, stream.Events, cls+" responses-stream")
		assert.Equal(t, west.Name, stream.Headers["x-failover-region"], "%s responses-stream: eastus rate-limited it", cls)
		assert.Equal(t, "2", stream.Headers["x-failover-attempts"], "%s responses-stream: a 429 before the stream began fails over", cls)

		// The follow-ups continue responses only swedencentral has: they go there alone, though eastus is first
		// and free (responses-new, sent after them, shows it).
		assert.Equal(t, first.ID, follow.PreviousResponseID, "%s responses-followup", cls)
		assert.Equal(t, fromWest, follow.Text, cls)
		assert.Equal(t, west.Name, follow.Headers["x-failover-region"], "%s responses-followup: to the region that made %s", cls, first.ID)
		assert.Equal(t, "1", follow.Headers["x-failover-attempts"], "%s responses-followup: eastus is not asked for what it does not have", cls)

		assert.Equal(t, stream.ID, streamFollow.PreviousResponseID, "%s responses-stream-followup", cls)
		assert.Equal(t, fromWest, streamFollow.Text, cls)
		assert.Equal(t, streamFollow.Text, streamFollow.CompletedText, cls)
		assertResponseEvents(t, streamFollow.Events, cls+" responses-stream-followup")
		assert.Equal(t, west.Name, streamFollow.Headers["x-failover-region"],
			"%s responses-stream-followup: to the region whose stream made %s", cls, stream.ID)
		assert.Equal(t, "1", streamFollow.Headers["x-failover-attempts"], cls)

		assert.Empty(t, fresh.PreviousResponseID, cls)
		assert.Equal(t, fromEast, fresh.Text, "%s responses-new: eastus, first in the order, serves what continues nothing", cls)
		assert.Equal(t, east.Name, fresh.Headers["x-failover-region"], cls)
		assert.Equal(t, "1", fresh.Headers["x-failover-attempts"], cls)
	}
	assert.Equal(t, madeWest, west.Responses(), "swedencentral stored the first turns and their follow-ups, and nothing else")
	assert.Equal(t, madeEast, east.Responses(), "eastus stored only the new conversations")

	// What the regions saw: every Responses call of each class on the classic surface (the deployment in the
	// body), with an api-version that serves it, the region's key and never the gateway's; and the follow-ups only
	// at swedencentral.
	type want struct {
		userAgent, input, previous string
		stream                     bool
		status                     int
	}
	const oai, azure = "OpenAI/JS ", "AzureOpenAI/JS "
	var wantEast, wantWest []want
	for i, ua := range []string{oai, azure} {
		cls := classes[i]
		first, stream := got[cls+" responses"].ID, got[cls+" responses-stream"].ID
		wantEast = append(wantEast,
			want{ua, "Say hello.", "", false, 429},
			want{ua, "Say hello.", "", true, 429},
			want{ua, "Say goodbye.", "", false, 200})
		wantWest = append(wantWest,
			want{ua, "Say hello.", "", false, 200},
			want{ua, "Say hello.", "", true, 200},
			want{ua, "Say it again.", first, false, 200},
			want{ua, "Say it again.", stream, true, 200})
	}
	for _, r := range []struct {
		region *failovertest.Server
		want   []want
	}{{east, wantEast}, {west, wantWest}} {
		calls := r.region.Calls()
		require.Len(t, calls, len(r.want), "%s: the calls of both classes, in order", r.region.Name)
		for i, c := range calls {
			w := r.want[i]
			where := fmt.Sprintf("%s call %d", r.region.Name, i)
			assert.Equal(t, "responses", c.Operation, where)
			assert.False(t, c.V1, "%s: the region's endpoint is its classic surface", where)
			assert.Equal(t, "gpt-4o", c.Deployment, where)
			assert.Equal(t, "gpt-4o", c.Model, where)
			assert.Equal(t, w.stream, c.Stream, where)
			assert.Equal(t, w.status, c.Status, where)
			if w.userAgent == azure {
				assert.Equal(t, "2025-04-01-preview", c.APIVersion, "%s: the caller's, which serves the Responses API", where)
			} else {
				assert.NotEmpty(t, c.APIVersion, "%s: the classic surface needs one (the fake refuses one too old with 400)", where)
			}
			var body struct {
				Input              any    `json:"input"`
				PreviousResponseID string `json:"previous_response_id"`
			}
			require.NoError(t, json.Unmarshal(c.Body, &body), where)
			assert.Equal(t, w.input, body.Input, where)
			assert.Equal(t, w.previous, body.PreviousResponseID, where)
			assert.True(t, strings.HasPrefix(c.Header.Get("User-Agent"), w.userAgent), "%s: User-Agent %q, want the %s class",
				where, c.Header.Get("User-Agent"), w.userAgent)
			assert.True(t, c.Authorized, where)
			assert.Equal(t, r.region.Key, c.Header.Get("Api-Key"), where)
			assert.Empty(t, c.Header.Get("Authorization"), "%s: the caller's Bearer token stays behind", where)
			for name, values := range c.Header {
				for _, v := range values {
					assert.NotContains(t, v, key, "%s: header %s carries the gateway key", where, name)
				}
			}
			assert.NotContains(t, string(c.Body), key, where)
		}
	}
}

// assertResponseEvents checks the types of a Responses stream's events, as the package read them: the service's
// own, from response.created to response.completed, with the text in deltas and no failure.
func assertResponseEvents(t *testing.T, events []string, where string) {
	t.Helper()
	require.NotEmpty(t, events, where)
	assert.Equal(t, "response.created", events[0], where)
	assert.Equal(t, "response.completed", events[len(events)-1], "%s: the stream ends at response.completed", where)
	deltas := 0
	for _, e := range events {
		if e == "response.output_text.delta" {
			deltas++
		}
		assert.NotContains(t, []string{"error", "response.failed", "response.incomplete"}, e, where)
	}
	assert.Greater(t, deltas, 1, "%s: the text came in deltas, one per word", where)
}

// requireNode returns the path of node, and checks that npm is there too. Their absence fails the test, so that
// the test command never passes without this client having run; FAILOVER_SKIP_NODE=1 skips it instead, on a
// machine that cannot have Node.js.
func requireNode(t *testing.T) string {
	t.Helper()
	node, nodeErr := exec.LookPath("node")
	_, npmErr := exec.LookPath("npm")
	if nodeErr != nil || npmErr != nil {
		msg := "node and npm are needed to run the official openai npm package against the gateway, and are not on PATH"
		if os.Getenv("FAILOVER_SKIP_NODE") == "1" {
			t.Skip(msg + " (FAILOVER_SKIP_NODE=1)")
		}
		t.Fatal(msg + "; install Node.js 20 or newer, or set FAILOVER_SKIP_NODE=1 to skip this test")
	}
	return node
}

// installNodeModules installs the locked openai package into testdata/npm/node_modules unless it is there.
func installNodeModules(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(nodeDir, "node_modules", "openai", "package.json")); err == nil {
		return
	}
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "npm", "ci", "--no-audit", "--no-fund")
	cmd.Dir = nodeDir
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("npm ci in %s: %v\n%s", nodeDir, err, out)
	}
	if _, err := os.Stat(filepath.Join(nodeDir, "node_modules", "openai", "package.json")); err != nil {
		t.Fatalf("npm ci in %s did not install openai: %v\n%s", nodeDir, err, out)
	}
}

// runNodeClient runs client.mjs's suite ("chat" or "responses") against the gateway at url and returns the lines
// it printed.
func runNodeClient(t *testing.T, node, url, key, suite string) []nodeLine {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "client.mjs", suite)
	cmd.Dir = nodeDir
	cmd.WaitDelay = 5 * time.Second
	// The package reads OPENAI_* and AZURE_OPENAI_* variables (OPENAI_BASE_URL and an endpoint together are an
	// error): the script must see only what the test gives it.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "OPENAI_") && !strings.HasPrefix(kv, "AZURE_OPENAI_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "GATEWAY_URL="+url, "GATEWAY_KEY="+key)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("node client.mjs: %v\nstderr:\n%s\nstdout:\n%s", err, stderr.String(), stdout.String())
	}
	var lines []nodeLine
	sc := bufio.NewScanner(&stdout)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var l nodeLine
		require.NoError(t, json.Unmarshal(sc.Bytes(), &l), "a line of client.mjs: %s", sc.Text())
		t.Logf("node: %s", sc.Text())
		lines = append(lines, l)
	}
	require.NoError(t, sc.Err())
	return lines
}
