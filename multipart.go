package failover

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"strings"
)

// Audio transcriptions and translations are multipart/form-data: the model is the "model" form field, beside a
// file of up to 25 MB. It is read without copying the file, and a region that reads its deployment from the body
// gets the same bytes with only that field rewritten, under the same boundary (so the same Content-Type). Bodies
// are split where mime/multipart splits them, the regions' parsers taken to agree: LF-only line ends from sloppy
// clients (when the first delimiter line ends so) are accepted, as it accepts them.

// maxModelField bounds the "model" field's value: a model or deployment name is far shorter.
const maxModelField = 1 << 10

var errNotForm = errors.New("failover: request body is not a multipart form")

// multipartModel is the value of the first form field named exactly "model" (with no filename: a file uploaded
// under that name is not the model), decoded as mime/multipart decodes it; "" when the form has none. ok is false
// when contentType is not multipart/form-data with a boundary, the body cannot be read up to that field (to its
// end, when there is none), or the value is longer than maxModelField. Parts before it are skipped, not kept.
func multipartModel(data []byte, contentType string) (model string, ok bool) {
	boundary, ok := formBoundary(contentType)
	if !ok {
		return "", false
	}
	r := multipart.NewReader(bytes.NewReader(data), boundary)
	for {
		p, err := r.NextPart()
		if err != nil {
			return "", err == io.EOF // the form's end: it names no model
		}
		if p.FormName() == "model" && p.FileName() == "" {
			value, err := io.ReadAll(io.LimitReader(p, maxModelField+1))
			if err != nil || len(value) > maxModelField {
				return "", false
			}
			return string(value), true
		}
	}
}

// withMultipartModel is the form data with the "model" field multipartModel reads set to model: that part
// rewritten whole (its header too, so that no Content-Transfer-Encoding garbles the new value) and every other
// byte kept, the file's included; or, when the form has no such field, one written in as its first part.
func withMultipartModel(data []byte, contentType, model string) ([]byte, error) {
	boundary, ok := formBoundary(contentType)
	if !ok {
		return nil, errNotForm
	}
	if strings.ContainsAny(model, "\r\n") || strings.HasPrefix(model, "--"+boundary) {
		return nil, fmt.Errorf("failover: model %q cannot be a form field's value", model) // it would end the part
	}
	s := formScanner{data: data, dash: []byte("--" + boundary), nl: []byte("\r\n")}
	first := -1 // where the first delimiter line (or the close delimiter's) starts
	for {
		header, err := s.next()
		if first < 0 {
			first = s.start
		}
		if err == io.EOF {
			break
		} else if err != nil {
			return nil, err
		}
		if isModelField(header) {
			out := s.appendField(append(make([]byte, 0, len(data)+len(model)+64), data[:s.headerAt]...), model)
			if !bytes.HasPrefix(data[s.pos:], s.nl) { // an empty part closed by a bare "--boundary": see bodyEnd
				out = append(out, s.nl...)
			}
			return append(out, data[s.pos:]...), nil
		}
	}
	out := append(append(append(make([]byte, 0, len(data)+len(model)+64), data[:first]...), s.dash...), s.nl...)
	return append(append(s.appendField(out, model), s.nl...), data[first:]...), nil
}

// formBoundary is the boundary of a multipart/form-data content type. One with a line break in it (only RFC 2231
// encoding can put one there) is refused: delimiters are found as lines.
func formBoundary(contentType string) (string, bool) {
	mediaType, params, err := mime.ParseMediaType(contentType)
	boundary := params["boundary"]
	return boundary, err == nil && mediaType == "multipart/form-data" && boundary != "" &&
		!strings.ContainsAny(boundary, "\r\n")
}

// isModelField reports whether a part's header makes it the "model" field, as mime/multipart's Part.FormName and
// Part.FileName read it.
func isModelField(h textproto.MIMEHeader) bool {
	disposition, params, err := mime.ParseMediaType(h.Get("Content-Disposition"))
	return err == nil && disposition == "form-data" && params["name"] == "model" && params["filename"] == ""
}

// formScanner walks a multipart body's parts in place, step by step as mime/multipart's Reader reads them (its
// lenience included), so that it finds the parts that Reader finds, where they are.
type formScanner struct {
	data, dash, nl []byte // the body, "--boundary", and the line end: "\r\n", or "\n" if the first delimiter's is
	parts          int
	pos            int // where the part found last ends (its content), and the scan goes on
	start          int // where its delimiter line starts (the close delimiter's, after the last part)
	headerAt       int // where its header starts
}

// next finds the next part and reads its header; io.EOF after the close delimiter.
func (s *formScanner) next() (textproto.MIMEHeader, error) {
	expectPart := false
	for {
		line := s.data[s.pos:]
		if i := bytes.IndexByte(line, '\n'); i >= 0 {
			line = line[:i+1]
		}
		s.start, s.pos = s.pos, s.pos+len(line)
		delimiter, closes := s.boundaryLine(line)
		switch {
		case delimiter:
			s.parts++
			s.headerAt = s.pos
			body := headerEnd(s.data, s.pos)
			header, err := textproto.NewReader(bufio.NewReader(bytes.NewReader(s.data[s.pos:body]))).ReadMIMEHeader()
			if err == io.EOF {
				return nil, err // a well-formed header the body ends in: mime/multipart reads the form's end
			}
			if s.pos = s.bodyEnd(body); err != nil || s.pos < 0 {
				return nil, errNotForm
			}
			return header, nil
		case closes:
			return nil, io.EOF
		case expectPart || len(line) == 0 || line[len(line)-1] != '\n' || s.parts > 0 && !bytes.Equal(line, s.nl):
			return nil, errNotForm
		}
		expectPart = s.parts > 0 // line was the line end before the next delimiter
	}
}

// boundaryLine reports whether line is a delimiter line ("--boundary", spaces and tabs, a line end) or the close
// delimiter's ("--boundary--", spaces and tabs, and a line end unless the body ends there).
func (s *formScanner) boundaryLine(line []byte) (delimiter, closes bool) {
	rest, ok := bytes.CutPrefix(line, s.dash)
	if !ok {
		return false, false
	}
	after, closes := bytes.CutPrefix(rest, []byte("--"))
	rest, after = bytes.TrimLeft(rest, " \t"), bytes.TrimLeft(after, " \t")
	if s.parts == 0 && string(rest) == "\n" {
		s.nl = s.nl[1:] // an LF-only body
	}
	return bytes.Equal(rest, s.nl), closes && (len(after) == 0 || bytes.Equal(after, s.nl))
}

// headerEnd is the index just past the blank line that ends the part header starting at data[i]; the body's end
// when there is none.
func headerEnd(data []byte, i int) int {
	for {
		j := bytes.IndexByte(data[i:], '\n')
		if j < 0 {
			return len(data)
		}
		if j == 0 || j == 1 && data[i] == '\r' {
			return i + j + 1
		}
		i += j + 1
	}
}

// bodyEnd is where the content that starts at data[i] ends: at the line end before the next "--boundary" that is
// followed by "--", a space, tab, CR or LF, or the body's end; or at i, as mime/multipart allows, when the content
// starts with such a "--boundary" (the header's blank line taken for its line end). -1 when none follows.
func (s *formScanner) bodyEnd(i int) int {
	endsBoundary := func(i int) bool { // a boundary that ends at data[i] is not the start of a longer one
		rest := s.data[i:]
		return len(rest) == 0 || strings.IndexByte(" \t\r\n", rest[0]) >= 0 || bytes.HasPrefix(rest, []byte("--"))
	}
	if bytes.HasPrefix(s.data[i:], s.dash) && endsBoundary(i+len(s.dash)) {
		return i
	}
	delim := append(s.nl[:len(s.nl):len(s.nl)], s.dash...)
	for j := i; ; j += len(delim) { // no line break in delim past its start: occurrences cannot overlap
		k := bytes.Index(s.data[j:], delim)
		if k < 0 {
			return -1
		}
		if j += k; endsBoundary(j + len(delim)) {
			return j
		}
	}
}

// appendField appends the "model" field's header, blank line and value (no line end: the delimiter's follows).
func (s *formScanner) appendField(out []byte, model string) []byte {
	out = append(append(out, `Content-Disposition: form-data; name="model"`...), s.nl...)
	return append(append(out, s.nl...), model...)
}

// formModel reads the model of an audio upload from its multipart form, keeping the form's bytes in body (they
// are rewritten for a backend that takes another name for the model). model is "" when the form names none: the
// model is then the deployment in an Azure path.
func formModel(req *http.Request, body requestBody) (requestBody, string, error) {
	if body.data == nil {
		data, err := readBody(body.get, body.length)
		if err != nil {
			return requestBody{}, "", err
		}
		body.data = data
	}
	model, ok := multipartModel(body.data, req.Header.Get("Content-Type"))
	if !ok {
		return requestBody{}, "", errors.New("failover: the request's body is not a multipart form with a model field that can be read")
	}
	return body, model, nil
}
