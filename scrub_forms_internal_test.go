package failover

import (
	"encoding/base64"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

// Whatever the secret's length (10 bytes or more), and whatever comes before and after it in an encoded value, the encoding holds
// one of the secret's spellings, and once they are redacted at most 2 characters of the secret's own show at each
// edge.
func TestSecretFormsCoverEveryAlignment(t *testing.T) {
	e := &engine{backends: []*backend{{secret: ""}}}
	for n := 10; n <= 90; n++ { // a shorter secret's embedded spellings are under minEncodedForm
		secret := strings.Repeat("k3Y-", 30)[:n]
		e.backends[0].secret = secret
		e.scrubs = scrubCache{}
		for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
			for before := range 4 {
				for after := range 4 {
					value := strings.Repeat("u", before) + secret + strings.Repeat("?", after)
					encoded := enc.EncodeToString([]byte(value))
					scrubbed, changed := e.scrubBytes([]byte(encoded))
					if !assert.True(t, changed, "n=%d before=%d after=%d %s", n, before, after, encoded) {
						continue
					}
					// The characters left of the secret's: those of what came before and after it, and at most 2 at
					// each edge; a redaction takes the place of the rest.
					left := len(scrubbed) - len(redacted)
					around := (4*before+2)/3 + (4*after+2)/3 + 4
					assert.LessOrEqual(t, left, around+2, "n=%d before=%d after=%d: %s", n, before, after, scrubbed)
				}
			}
		}
	}
}

// Chunks are not taken for pieces of a multi-line event (they are not scrubbed), and every piece is.
func TestPartialDataTellsChunksFromPieces(t *testing.T) {
	for data, partial := range map[string]bool{
		`{"id":"c1","choices":[{"index":0,"delta":{"content":"Hi"}}]}`: false,
		`{"error":{"message":"the key k is not valid",`:                true,
		`"type":"server_error","code":"500"}}`:                         true,
		`{"error":{"message":"x"}`:                                     true,
		`[DONE]`:                                                       true, // read as the end before this
	} {
		assert.Equal(t, partial, partialData([]byte(data)), data)
	}
}
