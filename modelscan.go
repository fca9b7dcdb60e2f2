package failover

import (
	"bytes"
	"encoding/json"
	"unicode/utf8"
)

// The model a request body names, found without decoding the body: a request from an SDK other than go-openai
// (openai-go writes "messages" first) would otherwise be decoded whole, on every request, to read one string.

// modelOf finds the model a request body names: the string value of its top-level "model" member (the last, if
// there are several, as encoding/json takes it); "" when there is none, it is not a string, or the body is not a
// JSON object. The member's name is matched exactly, as the OpenAI API reads it: "Model" is not the model (though
// encoding/json would match it into a struct field tagged "model").
func modelOf(body []byte) string {
	if model, ok := leadingModel(body); ok {
		return model
	}
	model, _ := scanModel(body)
	return model
}

// scanModel walks the top-level members of the JSON object data, skipping their values, and returns the last
// "model" member's string value. It validates only what it must to find members: a body that is not JSON is the
// region's to refuse. ok is false when data is not an object it can walk.
func scanModel(data []byte) (model string, ok bool) {
	value, ok := scanMember(data, "model")
	return stringValue(value), ok
}

// topLevelTrue reports whether the JSON object data has a top-level member name whose value is true (the last
// such member, as encoding/json reads it): a "stream": true inside a tool's schema is not the request's. Of data
// that is not an object it can walk (the end of a long body, see readBodyBytes), any such member counts.
func topLevelTrue(data []byte, name string) bool {
	value, ok := scanMember(data, name)
	if !ok {
		return jsonTrue(data, `"`+name+`"`)
	}
	return string(value) == "true"
}

// scanMember walks the top-level members of the JSON object data, skipping their values, and returns the raw
// value of the last member named name (nil when there is none). ok is false when data is not an object it can
// walk.
func scanMember(data []byte, name string) (value []byte, ok bool) {
	i := skipSpaceAt(data, 0)
	if i >= len(data) || data[i] != '{' {
		return nil, false
	}
	i = skipSpaceAt(data, i+1)
	if i < len(data) && data[i] == '}' {
		return nil, true
	}
	for i < len(data) && data[i] == '"' {
		keyEnd, keyEscaped := skipString(data, i)
		if keyEnd < 0 {
			return nil, false
		}
		named := isKey(data[i:keyEnd], keyEscaped, name)
		i = skipSpaceAt(data, keyEnd)
		if i >= len(data) || data[i] != ':' {
			return nil, false
		}
		start := skipSpaceAt(data, i+1)
		end := skipValue(data, start)
		if end < 0 {
			return nil, false
		}
		if named {
			value = data[start:end]
		}
		i = skipSpaceAt(data, end)
		switch {
		case i < len(data) && data[i] == ',':
			i = skipSpaceAt(data, i+1)
		case i < len(data) && data[i] == '}':
			return value, true
		default:
			return nil, false
		}
	}
	return nil, false
}

// isKey reports whether the JSON string key (quotes included) is name once decoded.
func isKey(key []byte, escaped bool, name string) bool {
	if !escaped {
		return string(key[1:len(key)-1]) == name // compared without a copy
	}
	var decoded string
	return json.Unmarshal(key, &decoded) == nil && decoded == name // "mod\u0065l" is rare, and still the model
}

// stringValue is the JSON value v as a Go string, "" when it is not a string.
func stringValue(v []byte) string {
	if len(v) < 2 || v[0] != '"' {
		return ""
	}
	inner := v[1 : len(v)-1]
	if bytes.IndexByte(inner, '\\') >= 0 || !utf8.Valid(inner) {
		// Escapes, or bytes encoding/json would replace: decoded as it decodes them.
		var s string
		if json.Unmarshal(v, &s) != nil {
			return ""
		}
		return s
	}
	return string(inner)
}

// skipSpaceAt is the index of the first byte from i on that is not JSON whitespace.
func skipSpaceAt(data []byte, i int) int {
	for i < len(data) && (data[i] == ' ' || data[i] == '\t' || data[i] == '\n' || data[i] == '\r') {
		i++
	}
	return i
}

// skipString returns the index just past the string that starts at data[i] (a quote), and whether it has an
// escape; -1 when it does not end.
func skipString(data []byte, i int) (end int, escaped bool) {
	for j := i + 1; j < len(data); j++ {
		switch data[j] {
		case '\\':
			escaped = true
			j++
		case '"':
			return j + 1, escaped
		}
	}
	return -1, escaped
}

// skipValue returns the index just past the value that starts at data[i]; -1 when it does not end.
func skipValue(data []byte, i int) int {
	if i >= len(data) {
		return -1
	}
	switch data[i] {
	case '"':
		end, _ := skipString(data, i)
		return end
	case '{', '[':
		depth := 0
		for j := i; j < len(data); j++ {
			switch data[j] {
			case '"':
				end, _ := skipString(data, j)
				if end < 0 {
					return -1
				}
				j = end - 1
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return j + 1
				}
			}
		}
		return -1
	}
	j := i // a number, true, false or null: up to the next delimiter
	for j < len(data) && data[j] != ',' && data[j] != '}' && data[j] != ']' && data[j] != ' ' &&
		data[j] != '\t' && data[j] != '\n' && data[j] != '\r' {
		j++
	}
	if j == i {
		return -1
	}
	return j
}
