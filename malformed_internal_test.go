package failover

import "testing"

// TestMalformed: an event's data is malformed when it is neither JSON nor the [DONE] marker; an empty data line
// is not (it carries nothing).
func TestMalformed(t *testing.T) {
	for data, want := range map[string]bool{
		`{"choices":[]}`: false, `[DONE]`: false, ``: false, `{"choices":[{"del`: true, `hello`: true,
		`{"a":1}{"b":2}`: true, `"text"`: false,
	} {
		if got := malformed([]byte(data)); got != want {
			t.Errorf("malformed(%q) = %v, want %v", data, got, want)
		}
	}
}
