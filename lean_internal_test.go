package failover

import (
	"bufio"
	"bytes"
	"io"
	"strings"
	"sync"
	"testing"
	"testing/iotest"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// lineBuffer splits a stream into the same lines as a bufio.Reader, however the reads come, and gives a buffer
// grown for a long line back once that line is read: a gateway holds thousands of streams, each with one.
func TestLineBufferSplitsLikeBufio(t *testing.T) {
	long := "data: " + strings.Repeat("x", 10*lineBufferSize) + "\n"
	stream := "data: {\"a\":1}\n\n" + long + "\r\n: comment\nevent: response.created\ndata: {}\n\nhalf a li"
	var want []string
	lines := bufio.NewReader(strings.NewReader(stream))
	for {
		line, err := lines.ReadString('\n')
		want = append(want, line)
		if err != nil {
			break
		}
	}
	for name, r := range map[string]io.Reader{
		"whole":    strings.NewReader(stream),
		"bytewise": iotest.OneByteReader(strings.NewReader(stream)),
		"halves":   iotest.HalfReader(strings.NewReader(stream)),
	} {
		t.Run(name, func(t *testing.T) {
			var b lineBuffer
			var got []string
			for range 100 {
				line, err := b.readLine(r)
				got = append(got, string(line))
				if line := string(line); line != long && line != "" {
					assert.LessOrEqual(t, len(b.buf), lineBufferSize, "after %q, the buffer is back to its size", line)
				}
				if err != nil {
					require.ErrorIs(t, err, io.EOF)
					break
				}
			}
			assert.Equal(t, want, got)
		})
	}
}

func TestLineBufferRefusesAnEndlessLine(t *testing.T) {
	var b lineBuffer
	_, err := b.readLine(io.MultiReader(strings.NewReader("data: "), iotest.OneByteReader(bytes.NewReader(bytes.Repeat([]byte("y"), maxEventLine+10)))))
	require.ErrorContains(t, err, "stream line longer than")
	assert.LessOrEqual(t, len(b.buf), maxEventLine+1)
}

// emptyReader returns nothing, and no error, forever.
type emptyReader struct{}

func (emptyReader) Read([]byte) (int, error) { return 0, nil }

func TestLineBufferGivesUpOnAReaderThatReturnsNothing(t *testing.T) {
	var b lineBuffer
	_, err := b.readLine(emptyReader{})
	assert.ErrorIs(t, err, io.ErrNoProgress)
}

// writerOnly hides any ReadFrom, as a middleware's ResponseWriter does.
type writerOnly struct{ io.Writer }

// An answer held in memory is written from there: io.Copy would otherwise allocate a 32 KiB buffer for each
// answer written to a ResponseWriter that a middleware wraps.
func TestBodyReaderWritesItselfWithoutACopyBuffer(t *testing.T) {
	answer := []byte(`{"id":"chatcmpl-1","choices":[]}`)
	var out bytes.Buffer
	out.Grow(1 << 10)
	allocs := testing.AllocsPerRun(100, func() {
		out.Reset()
		n, err := io.Copy(writerOnly{&out}, newBodyReader(answer))
		if err != nil || n != int64(len(answer)) {
			t.Fatalf("copied %d bytes: %v", n, err)
		}
	})
	assert.Equal(t, string(answer), out.String())
	assert.LessOrEqual(t, allocs, 2.0, "the body reader itself, and nothing the size of a copy buffer")
}

// Close may run while the body is being written (as on net/http's bodies): the pooled buffer goes back once,
// and the writer never sees bytes of another answer.
func TestBodyReaderWriteToAndCloseConcurrently(t *testing.T) {
	for range 50 {
		buf := answerBuffers.Get().(*[]byte)
		data := append((*buf)[:0], bytes.Repeat([]byte("a"), 3*maxWritePiece)...)
		body := newBodyReader(data)
		body.pooled = buf
		var out bytes.Buffer
		var wg sync.WaitGroup
		wg.Go(func() { _, _ = body.WriteTo(&out) })
		wg.Go(func() { _ = body.Close() })
		wg.Wait()
		assert.Equal(t, strings.Repeat("a", out.Len()), out.String(), "only the answer's own bytes")
		assert.Zero(t, out.Len()%maxWritePiece, "whole pieces, up to the close")
	}
}
