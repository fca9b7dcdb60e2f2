package failover

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
)

// TestScanModelAgreesWithEncodingJSON: the scanner finds the model encoding/json would find in a map, in the bodies SDKs write
// and in awkward ones. (A body that starts with its model is read by leadingModel, which takes that one: such a
// body naming a second model is not tested here.)
func TestScanModelAgreesWithEncodingJSON(t *testing.T) {
	bodies := []string{
		`{"model":"gpt-4o","messages":[]}`,
		`{"messages":[{"role":"user","content":"say \"model\": \"x\""}],"model":"gpt-4o"}`,
		` { "messages" : [ {"content":"}{]["} ] , "model" : "gpt-4o-mini" } `,
		`{"input":"hi","model":"text-embedding-3-small","dimensions":8,"user":null,"n":1.5e3,"stream":true}`,
		`{"model":"we\"ird\u00e9"}`,
		`{"messages":[],"model":"first","model":"second"}`,
		`{"model":null,"messages":[]}`,
		`{"model":42}`,
		`{"Model":"capitalised is not the model"}`,
		`{"mod\u0065l":"escaped-name"}`,
		`{"metadata":{"model":"nested"},"messages":[]}`,
		`{}`,
		`[]`,
		`model=gpt-4o`,
		`{"a":"unterminated}`,
		``,
	}
	for _, body := range bodies {
		var m map[string]json.RawMessage // keys matched exactly, as the OpenAI API matches them
		var wantModel string
		if json.Unmarshal([]byte(body), &m) == nil {
			_ = json.Unmarshal(m["model"], &wantModel)
		}
		assert.Equal(t, wantModel, modelOf([]byte(body)), body)
	}
}

// BenchmarkModelOf: reading the model of an openai-go chat body, which names it after the messages.
func BenchmarkModelOf(b *testing.B) {
	body := []byte(`{"messages":[{"content":"You are a terse assistant.","role":"system"},{"content":"Say hello in five words.","role":"user"}],"model":"gpt-4o"}`)
	b.ReportAllocs()
	for b.Loop() {
		if modelOf(body) != "gpt-4o" {
			b.Fatal("wrong model")
		}
	}
}

// FuzzScanModel: on any JSON object, the scanner finds the model encoding/json finds in a map (the last member
// named exactly "model", when it is a string); on anything else it must not panic.
func FuzzScanModel(f *testing.F) {
	for _, seed := range []string{`{"messages":[],"model":"gpt-4o"}`, `{"a":{"model":"x"},"model":"y"}`,
		`{"model":"\u0067pt"}`, `{"a":[1,"]",{"b":"}"}],"model":"m"}`, `{"model":1}`, `{`, `"model"`} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, body string) {
		got, _ := scanModel([]byte(body))
		var m map[string]json.RawMessage // keys matched exactly, the last duplicate kept
		if json.Unmarshal([]byte(body), &m) != nil {
			return
		}
		var wantModel string
		_ = json.Unmarshal(m["model"], &wantModel)
		if got != wantModel {
			t.Fatalf("scanModel(%q) = %q; encoding/json finds %q", body, got, wantModel)
		}
	})
}
