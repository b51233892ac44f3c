package s3store

import "testing"

// TestSmallUploadIsOnePut: an upload below the part size costs exactly one PutObject — no
// HEAD, LIST or parent check — even into a directory that exists only by implication. The
// gateway's small-file rate depends on it.
func TestSmallUploadIsOnePut(t *testing.T) {
	e := newEnv(t, Config{})
	e.spy.reset()
	data := randBytes(t, 4<<10)
	put(t, e.fs, "/new/deeper/f", data)
	e.spy.mu.Lock()
	calls := map[string]int{}
	for k, v := range e.spy.calls {
		calls[k] = v
	}
	e.spy.mu.Unlock()
	if len(calls) != 1 || calls["PutObject"] != 1 {
		t.Errorf("S3 calls for one 4 KiB upload = %v, want exactly one PutObject", calls)
	}
	mustEqual(t, "read back", get(t, e.fs, "/new/deeper/f"), data)
	if en, err := e.fs.Stat(t.Context(), "/new/deeper"); err != nil || !en.Dir {
		t.Errorf("stat of the implied parent after the upload = %+v, %v; want a directory", en, err)
	}
}
