package handler

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"testing"
	"testing/iotest"
)

// TestReadPart checks readPart against io.ReadFull into a part-sized buffer, the behaviour it
// replaces: the same bytes and the same errors for every length around the buffer's growth
// steps and the part size, with readers that return a byte at a time or fail midway, and a
// buffer reused from part to part.
func TestReadPart(t *testing.T) {
	const size = 3*minPartBuffer + 17 // not a multiple of the growth steps
	readers := map[string]func(io.Reader) io.Reader{
		"whole":    func(r io.Reader) io.Reader { return r },
		"one byte": iotest.OneByteReader,
		"half":     iotest.HalfReader,
		"data+EOF": iotest.DataErrReader,
	}
	for _, n := range []int{0, 1, minPartBuffer - 1, minPartBuffer, minPartBuffer + 1, 2 * minPartBuffer, size - 1, size, size + 1, 2 * size, 2*size + 5} {
		data := make([]byte, n)
		rand.NewChaCha8([32]byte{byte(n)}).Read(data)
		for name, wrap := range readers {
			var got, want [][]byte
			var gotErr, wantErr error
			var buf []byte
			r := wrap(bytes.NewReader(data))
			for i := 0; i < 10 && gotErr == nil; i++ {
				var k int
				k, gotErr = readPart(r, &buf, size)
				got = append(got, bytes.Clone(buf[:k]))
			}
			ref := wrap(bytes.NewReader(data))
			for i := 0; i < 10 && wantErr == nil; i++ {
				part := make([]byte, size)
				k, err := io.ReadFull(ref, part)
				want, wantErr = append(want, part[:k]), err
			}
			if !errors.Is(gotErr, wantErr) || len(got) != len(want) {
				t.Fatalf("%d bytes, %s reader: %d parts ending %v, want %d ending %v", n, name, len(got), gotErr, len(want), wantErr)
			}
			for i := range got {
				if !bytes.Equal(got[i], want[i]) {
					t.Fatalf("%d bytes, %s reader: part %d is %d bytes, want %d (or differs)", n, name, i, len(got[i]), len(want[i]))
				}
			}
			if cap(buf) > 2*size {
				t.Errorf("%d bytes: buffer grew to %d, the part size is %d", n, cap(buf), size)
			}
			if n < minPartBuffer && cap(buf) > 2*minPartBuffer {
				t.Errorf("%d bytes: a %d-byte buffer for a small output", n, cap(buf))
			}
		}
	}
	// A read error midway is returned with what was read before it.
	boom := errors.New("boom")
	var buf []byte
	k, err := readPart(io.MultiReader(bytes.NewReader(make([]byte, 100)), iotest.ErrReader(boom)), &buf, size)
	if k != 100 || !errors.Is(err, boom) {
		t.Errorf("failing reader: %d bytes, %v; want 100, boom", k, err)
	}
}
