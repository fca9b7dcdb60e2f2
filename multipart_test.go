package failover

import (
	"bytes"
	"encoding/binary"
	"io"
	"math/rand/v2"
	"mime"
	"mime/multipart"
	"net/textproto"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// formOf writes a multipart body by hand, as a sloppy or unusual client might: each part is its header lines and
// its content, joined with nl, under boundary b.
func formOf(b, nl string, parts ...[2]string) string {
	var s strings.Builder
	for _, p := range parts {
		s.WriteString("--" + b + nl + strings.ReplaceAll(p[0], "\n", nl) + nl + nl + p[1] + nl)
	}
	return s.String() + "--" + b + "--" + nl
}

// textField is a form field, for formOf.
func textField(name, value string) [2]string {
	return [2]string{`Content-Disposition: form-data; name="` + name + `"`, value}
}

// fileField is an uploaded file, for formOf.
func fileField(name, filename, content string) [2]string {
	return [2]string{`Content-Disposition: form-data; name="` + name + `"; filename="` + filename + "\"\nContent-Type: audio/wav",
		content}
}

// wav is a file's content with what looks, to a careless scanner, like delimiters and a model field.
const wav = "RIFF\x00\x01\r\n--bX\r\n--b-x\r\n--bo\n--b\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nfake--b\x00\xff"

const formType = "multipart/form-data; boundary=b"

// multipartCases are bodies and their content types, with the model multipartModel must read from them.
var multipartCases = []struct {
	name, contentType, body, model string
	ok                             bool
}{
	{"model first", formType, formOf("b", "\r\n", textField("model", "whisper"), fileField("file", "a.wav", wav)), "whisper", true},
	{"model after the file", formType,
		formOf("b", "\r\n", fileField("file", "a.wav", wav), textField("language", "en"), textField("model", "whisper-1")), "whisper-1", true},
	{"no model field", formType, formOf("b", "\r\n", fileField("file", "a.wav", wav), textField("response_format", "json")), "", true},
	{"LF-only body", formType, formOf("b", "\n", fileField("file", "a.wav", "RIFF\n--bX\n"), textField("model", "whisper")), "whisper", true},
	{"a file named model is not the model", formType,
		formOf("b", "\r\n", fileField("model", "model.bin", "not-me"), textField("model", "whisper")), "whisper", true},
	{"only a file named model", formType, formOf("b", "\r\n", fileField("model", "m.bin", "not-me")), "", true},
	{"the name matches exactly", formType, formOf("b", "\r\n", textField("Model", "x"), textField("model ", "y")), "", true},
	{"the first of two", formType, formOf("b", "\r\n", textField("model", "first"), textField("model", "second")), "first", true},
	{"an empty model", formType, formOf("b", "\r\n", textField("model", ""), fileField("file", "a.wav", wav)), "", true},
	{"quoted boundary", `multipart/form-data; boundary="a:b c"`, formOf("a:b c", "\r\n", textField("model", "q")), "q", true},
	{"unquoted boundary, other parameters", `Multipart/Form-Data; charset=utf-8; boundary=XyZ-1`,
		formOf("XyZ-1", "\r\n", textField("model", "u")), "u", true},
	{"preamble, padding and epilogue", formType,
		"preamble\r\n--b \t\r\nContent-Disposition: form-data; name=model\r\n\r\nm\r\n--b-- \r\nepilogue", "m", true},
	{"quoted-printable model", formType, formOf("b", "\r\n",
		[2]string{"Content-Disposition: form-data; name=\"model\"\nContent-Transfer-Encoding: quoted-printable", "gpt=2D4o"}),
		"gpt-4o", true},
	{"an empty part closed by a bare delimiter", formType,
		"--b\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\n--b\r\nContent-Disposition: form-data; name=\"x\"\r\n\r\ny\r\n--b--",
		"", true},
	{"no parts", formType, "--b--\r\n", "", true},
	{"a header the body ends in ends the form", formType, "--b\r\nContent-Disposition: form-data; name=model", "", true},
	{"a delimiter line the body ends in", formType, "--b\n", "", true},
	{"a model too long to be one", formType, formOf("b", "\r\n", textField("model", strings.Repeat("m", maxModelField+1))), "", false},
	{"truncated before the model ends", formType, "--b\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisp", "", false},
	{"truncated with no model", formType, "--b\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nRIFF", "", false},
	{"a malformed header", formType, formOf("b", "\r\n", [2]string{"no colon", "x"}, textField("model", "m")), "", false},
	{"garbage", formType, "\x00\xffnot a form at all", "", false},
	{"empty", formType, "", "", false},
	{"JSON", "application/json", `{"model":"gpt-4o"}`, "", false},
	{"no boundary", "multipart/form-data", formOf("b", "\r\n", textField("model", "m")), "", false},
	{"not form data", "multipart/mixed; boundary=b", formOf("b", "\r\n", textField("model", "m")), "", false},
	{"a bad content type", "multipart/form-data; boundary=", formOf("b", "\r\n", textField("model", "m")), "", false},
}

func TestMultipartModel(t *testing.T) {
	for _, c := range multipartCases {
		model, ok := multipartModel([]byte(c.body), c.contentType)
		assert.Equal(t, c.ok, ok, c.name)
		assert.Equal(t, c.model, model, c.name)
	}
}

// TestWithMultipartModel: every body multipartModel can read gets the new model, in place of the one it read or
// as a first part, its other parts unchanged; and reads as the new model.
func TestWithMultipartModel(t *testing.T) {
	for _, c := range multipartCases {
		out, err := withMultipartModel([]byte(c.body), c.contentType, "eastus-whisper")
		if !c.ok && c.name != "a model too long to be one" { // that one is a form, with a value to replace
			assert.Error(t, err, c.name)
			continue
		}
		require.NoError(t, err, c.name)
		model, ok := multipartModel(out, c.contentType)
		assert.True(t, ok, c.name)
		assert.Equal(t, "eastus-whisper", model, c.name)
		_, params, _ := mime.ParseMediaType(c.contentType)
		assertOnlyModelChanged(t, []byte(c.body), out, params["boundary"], "eastus-whisper")
	}
}

// TestWithMultipartModelBytes: the bytes themselves, where a part is replaced, inserted, or was empty.
func TestWithMultipartModelBytes(t *testing.T) {
	const model = "Content-Disposition: form-data; name=\"model\"\r\n\r\n"
	cases := []struct{ body, want string }{
		{"--b\r\nContent-Disposition: form-data; name=model\r\nContent-Type: text/plain\r\n\r\nwhisper\r\n--b\r\nX: y\r\n\r\nz\r\n--b--\r\n",
			"--b\r\n" + model + "dep\r\n--b\r\nX: y\r\n\r\nz\r\n--b--\r\n"},
		{"pre\r\n--b\r\nX: y\r\n\r\nz\r\n--b--\r\n", "pre\r\n--b\r\n" + model + "dep\r\n--b\r\nX: y\r\n\r\nz\r\n--b--\r\n"},
		{"--b--", "--b\r\n" + model + "dep\r\n--b--"},
		{"--b\nX: y\n\nz\n--b--\n", "--b\nContent-Disposition: form-data; name=\"model\"\n\ndep\n--b\nX: y\n\nz\n--b--\n"},
		{"--b\r\nContent-Disposition: form-data; name=model\r\n\r\n--b--", "--b\r\n" + model + "dep\r\n--b--"},
	}
	for _, c := range cases {
		out, err := withMultipartModel([]byte(c.body), formType, "dep")
		require.NoError(t, err, c.body)
		assert.Equal(t, c.want, string(out), c.body)
	}
}

func TestWithMultipartModelRefuses(t *testing.T) {
	body := []byte(formOf("b", "\r\n", textField("model", "m")))
	for _, model := range []string{"a\r\n--b--", "a\nb", "--b", "--b--", "--bx"} { // "--bx" would do: refused anyway
		_, err := withMultipartModel(body, formType, model)
		assert.Error(t, err, model)
	}
	_, err := withMultipartModel(body, "multipart/form-data; boundary*=utf-8''b%0D%0A", "m")
	assert.Error(t, err, "a boundary with a line break")
	out, err := withMultipartModel(body, formType, "b--b")
	require.NoError(t, err)
	assert.Equal(t, "b--b", mustModel(t, out, formType))
}

// TestWithMultipartModelRoundTrip: a body as an SDK writes it (openai-go writes the file first), with a large
// binary file, reads back through mime/multipart with every part but the model's byte for byte the same.
func TestWithMultipartModelRoundTrip(t *testing.T) {
	audio := make([]byte, 3<<20)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range audio {
		audio[i] = byte(rng.IntN(256))
	}
	for i := 0; i+64 < len(audio); i += 4099 {
		copy(audio[i:], "\r\n--"+"boundary"[:rng.IntN(9)]) // near-delimiters
	}
	for _, modelFirst := range []bool{false, true} {
		var body bytes.Buffer
		w := multipart.NewWriter(&body)
		if modelFirst {
			require.NoError(t, w.WriteField("model", "whisper"))
		}
		fw, err := w.CreateFormFile("file", "speech.mp3")
		require.NoError(t, err)
		_, _ = fw.Write(audio)
		require.NoError(t, w.WriteField("language", "en"))
		require.NoError(t, w.WriteField("response_format", "verbose_json"))
		require.NoError(t, w.WriteField("timestamp_granularities[]", "word"))
		if !modelFirst {
			require.NoError(t, w.WriteField("model", "whisper"))
		}
		require.NoError(t, w.Close())

		assert.Equal(t, "whisper", mustModel(t, body.Bytes(), w.FormDataContentType()))
		out, err := withMultipartModel(body.Bytes(), w.FormDataContentType(), "swedencentral-whisper")
		require.NoError(t, err)
		assert.Equal(t, "swedencentral-whisper", mustModel(t, out, w.FormDataContentType()))
		assertOnlyModelChanged(t, body.Bytes(), out, w.Boundary(), "swedencentral-whisper")
		parts, err := rawParts(out, w.Boundary())
		require.NoError(t, err)
		assert.True(t, slicesContainsFile(parts, audio), "the file is unchanged")
	}
}

func slicesContainsFile(parts []rawPart, content []byte) bool {
	for _, p := range parts {
		if p.filename != "" && p.content == string(content) {
			return true
		}
	}
	return false
}

func mustModel(t *testing.T, body []byte, contentType string) string {
	t.Helper()
	model, ok := multipartModel(body, contentType)
	require.True(t, ok)
	return model
}

// rawPart is a part as mime/multipart reads it, undecoded.
type rawPart struct {
	name, filename, content string
	header                  textproto.MIMEHeader
}

func rawParts(body []byte, boundary string) ([]rawPart, error) {
	var parts []rawPart
	r := multipart.NewReader(bytes.NewReader(body), boundary)
	for {
		p, err := r.NextRawPart()
		if err == io.EOF {
			return parts, nil
		}
		if err != nil {
			return nil, err
		}
		content, err := io.ReadAll(p)
		if err != nil {
			return nil, err
		}
		parts = append(parts, rawPart{p.FormName(), p.FileName(), string(content), p.Header})
	}
}

// assertOnlyModelChanged checks that out's parts, as mime/multipart reads them, are in's with its first "model"
// field's replaced by model (or one inserted first, when it had none).
func assertOnlyModelChanged(t *testing.T, in, out []byte, boundary, model string) {
	t.Helper()
	before, err := rawParts(in, boundary)
	require.NoError(t, err)
	after, err := rawParts(out, boundary)
	require.NoError(t, err)
	want := rawPart{"model", "", model, textproto.MIMEHeader{"Content-Disposition": {`form-data; name="model"`}}}
	i := 0
	for i < len(before) && (before[i].name != "model" || before[i].filename != "") {
		i++
	}
	if i == len(before) {
		before, i = append([]rawPart{want}, before...), 0
	}
	before[i] = want
	assert.Equal(t, before, after)
}

// FuzzMultipartModel: on any body, neither function panics; on a body mime/multipart reads as a form, multipartModel
// reads the model ReadForm reads, and withMultipartModel's body reads as the same form with the new model.
func FuzzMultipartModel(f *testing.F) {
	f.Add("b", []byte(formOf("b", "\r\n", textField("model", "m"), fileField("file", "a", "\r\n--bX"))), "d")
	f.Add("b", []byte(formOf("b", "\n", fileField("file", "a", "x"), textField("model", "m"))), "d")
	f.Add("a b", []byte(formOf("a b", "\r\n", textField("x", "y"))), "d")
	f.Add("b", []byte("--b\r\nContent-Disposition: form-data; name=model\r\n\r\n--b--"), "")
	f.Add("b", []byte("x\r\n--b \r\nA: b\r\n c\r\n\r\n\r\n--b--\r\n"), "--bx")
	f.Add("b", []byte("--b\n"), "0") // mime/multipart reads it as an empty form
	f.Fuzz(func(t *testing.T, boundary string, body []byte, model string) {
		contentType := mime.FormatMediaType("multipart/form-data", map[string]string{"boundary": boundary})
		if contentType == "" {
			contentType = "multipart/form-data; boundary=" + boundary
		}
		got, gotOK := multipartModel(body, contentType)
		out, outErr := withMultipartModel(body, contentType, model)
		b, ok := formBoundary(contentType)
		if !ok {
			assert.False(t, gotOK)
			assert.Error(t, outErr)
			return
		}
		form, err := multipart.NewReader(bytes.NewReader(body), b).ReadForm(1 << 20)
		if err != nil {
			return // not a form mime/multipart reads whole
		}
		defer form.RemoveAll()
		var want string
		if values := form.Value["model"]; len(values) > 0 {
			want = values[0]
		}
		if len(want) > maxModelField {
			assert.False(t, gotOK)
		} else {
			assert.True(t, gotOK)
			assert.Equal(t, want, got)
		}
		if strings.ContainsAny(model, "\r\n") || strings.HasPrefix(model, "--"+b) {
			assert.Error(t, outErr)
			return
		}
		require.NoError(t, outErr)
		if _, err := rawParts(body, b); err != nil {
			return
		}
		assertOnlyModelChanged(t, body, out, b, model)
		if len(model) <= maxModelField {
			assert.Equal(t, model, mustModel(t, out, contentType))
		}
	})
}

// BenchmarkMultipartModel: the model of a 25 MB transcription body that names it after the file, as openai-go
// writes it, and the body rewritten for a region.
func BenchmarkMultipartModel(b *testing.B) {
	audio := make([]byte, 25<<20) // compressed audio: bytes that look random
	for i, rng := 0, rand.New(rand.NewPCG(1, 2)); i < len(audio); i += 8 {
		binary.LittleEndian.PutUint64(audio[i:], rng.Uint64())
	}
	body := []byte(formOf("b", "\r\n", fileField("file", "a.mp3", string(audio)), textField("model", "whisper")))
	b.Run("read", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			if model, _ := multipartModel(body, formType); model != "whisper" {
				b.Fatal(model)
			}
		}
	})
	b.Run("rewrite", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			if _, err := withMultipartModel(body, formType, "eastus-whisper"); err != nil {
				b.Fatal(err)
			}
		}
	})
}
