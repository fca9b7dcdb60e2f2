package failover_test

import (
	"bytes"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/aoai-failover/failover"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// seen is what a region's audio or image endpoint received.
type seen struct {
	path, query, model, contentType string
	file                            []byte
}

// mediaRegion is a region's images and audio endpoints as Azure answers them: the first `throttle` requests get
// 429 with retry-after-ms, the others a JSON answer (a transcription or an image), or audio bytes for speech.
func mediaRegion(t *testing.T, name string, throttle int) (url string, got func() []seen) {
	var mu sync.Mutex
	var all []seen
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := seen{path: r.URL.Path, query: r.URL.RawQuery, contentType: r.Header.Get("Content-Type")}
		if strings.HasPrefix(s.contentType, "multipart/form-data") {
			if err := r.ParseMultipartForm(1 << 20); err == nil {
				s.model = r.FormValue("model")
				if f, _, err := r.FormFile("file"); err == nil {
					s.file, _ = io.ReadAll(f)
					f.Close()
				}
			}
		} else {
			body, _ := io.ReadAll(r.Body)
			s.file = body
		}
		mu.Lock()
		all = append(all, s)
		n := len(all)
		mu.Unlock()
		if n <= throttle {
			w.Header().Set("Retry-After-Ms", "30000")
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusTooManyRequests)
			fmt.Fprint(w, `{"error":{"code":"429","message":"Requests to the Audio_Transcriptions_Create Operation have exceeded call rate limit."}}`)
			return
		}
		switch {
		case strings.HasSuffix(r.URL.Path, "/audio/speech"):
			w.Header().Set("Content-Type", "audio/mpeg")
			w.Write([]byte("ID3\x03 not json at all from " + name))
		case strings.HasSuffix(r.URL.Path, "/images/generations"):
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"created":1,"data":[{"url":"https://%s.example/image.png"}]}`, name)
		default:
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"text":"Hello from %s."}`, name)
		}
	}))
	t.Cleanup(srv.Close)
	return srv.URL, func() []seen {
		mu.Lock()
		defer mu.Unlock()
		return append([]seen(nil), all...)
	}
}

// audioForm is a transcription request as openai-go writes it: the file first, then the model.
func audioForm(t *testing.T, model string) (body []byte, contentType string) {
	var b bytes.Buffer
	w := multipart.NewWriter(&b)
	f, err := w.CreateFormFile("file", "hello.wav")
	require.NoError(t, err)
	f.Write([]byte("RIFF\x00\x01fake wave bytes\r\n--not-a-boundary"))
	if model != "" {
		require.NoError(t, w.WriteField("model", model))
	}
	require.NoError(t, w.WriteField("response_format", "json"))
	require.NoError(t, w.Close())
	return b.Bytes(), w.FormDataContentType()
}

// TestAudioTranscriptionFailsOver: a multipart transcription goes past a throttled region; the model is read from
// the form, a v1 region gets its own deployment name written into the form, and the file arrives intact.
func TestAudioTranscriptionFailsOver(t *testing.T) {
	eastURL, east := mediaRegion(t, "eastus", 1)
	westURL, west := mediaRegion(t, "westus", 0)
	client := newClient(t, []failover.Region{
		{Name: "eastus", Endpoint: eastURL, APIKey: "key-east"},
		{Name: "westus", Endpoint: westURL + "/openai/v1", APIKey: "key-west", Deployments: map[string]string{"whisper": "whisper-prod"}},
	})
	body, ct := audioForm(t, "whisper")
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, "https://caller.example/v1/audio/transcriptions", bytes.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", ct)
	resp, err := transportClient(client).Do(req)
	require.NoError(t, err)
	assert.Equal(t, `{"text":"Hello from westus."}`, readAll(t, resp))

	require.Len(t, east(), 1)
	assert.Equal(t, "/openai/deployments/whisper/audio/transcriptions", east()[0].path)
	assert.Equal(t, "whisper", east()[0].model)
	require.Len(t, west(), 1)
	w := west()[0]
	assert.Equal(t, "/openai/v1/audio/transcriptions", w.path)
	assert.Equal(t, "whisper-prod", w.model, "the region's deployment, written into the form")
	assert.Equal(t, ct, w.contentType, "the same boundary")
	assert.Equal(t, "RIFF\x00\x01fake wave bytes\r\n--not-a-boundary", string(w.file))
}

// TestAudioTranscriptionModelFromAzurePath: an Azure client names the deployment only in the path; a v1 region
// gets it written into the form as a model field.
func TestAudioTranscriptionModelFromAzurePath(t *testing.T) {
	url, got := mediaRegion(t, "westus", 0)
	client := newClient(t, []failover.Region{{Name: "westus", Endpoint: url + "/openai/v1", APIKey: "key-west"}})
	body, ct := audioForm(t, "")
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost,
		"https://caller.example/openai/deployments/whisper/audio/translations?api-version=2024-10-21", bytes.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", ct)
	resp, err := client.Do(req)
	require.NoError(t, err)
	assert.Equal(t, http.StatusOK, resp.StatusCode, readAll(t, resp))
	require.Len(t, got(), 1)
	assert.Equal(t, "whisper", got()[0].model)
	assert.Equal(t, "/openai/v1/audio/translations", got()[0].path)
}

// TestAudioRequestThatIsNotAFormIsRefused: a transcription whose body is not a readable form is the caller's
// fault: 400, and no region is asked.
func TestAudioRequestThatIsNotAFormIsRefused(t *testing.T) {
	url, got := mediaRegion(t, "westus", 0)
	client := newClient(t, []failover.Region{{Name: "westus", Endpoint: url, APIKey: "key-west"}})
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, "https://caller.example/v1/audio/transcriptions",
		strings.NewReader(`{"model":"whisper"}`))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	require.NoError(t, err)
	assert.Equal(t, http.StatusBadRequest, resp.StatusCode)
	assert.Contains(t, readAll(t, resp), "multipart form")
	assert.Empty(t, got())
}

// TestSpeechAndImagesFailOver: speech (JSON in, audio bytes out, which are not a JSON object and must not be taken
// for a garbled answer) and image generation fail over like chat.
func TestSpeechAndImagesFailOver(t *testing.T) {
	for _, tc := range []struct{ path, body, want string }{
		{"/v1/audio/speech", `{"model":"tts-1","input":"Hello.","voice":"alloy"}`, "ID3\x03 not json at all from westus"},
		{"/openai/v1/images/generations", `{"model":"dall-e-3","prompt":"a lighthouse"}`, `{"created":1,"data":[{"url":"https://westus.example/image.png"}]}`},
	} {
		t.Run(tc.path, func(t *testing.T) {
			eastURL, east := mediaRegion(t, "eastus", 1)
			westURL, _ := mediaRegion(t, "westus", 0)
			client := newClient(t, []failover.Region{
				{Name: "eastus", Endpoint: eastURL, APIKey: "key-east"},
				{Name: "westus", Endpoint: westURL, APIKey: "key-west"},
			})
			req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, "https://caller.example"+tc.path, strings.NewReader(tc.body))
			require.NoError(t, err)
			resp, err := client.Do(req)
			require.NoError(t, err)
			assert.Equal(t, tc.want, readAll(t, resp))
			require.Len(t, east(), 1, "throttled first")
		})
	}
}
