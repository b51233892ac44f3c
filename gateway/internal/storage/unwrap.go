package storage

// Decorators that observe a store (metrics, gateway events) wrap an FS or an Upload. The
// optional interfaces (Setstater, Hasher, NoReplaceRenamer, WriterSetstater, SpaceReporter;
// Committer, AttrRecorder on uploads) reach through them the way http.ResponseController
// reaches through wrapped ResponseWriters: an observing decorator implements the methods it
// observes plus Unwrap, and callers ask As or UploadAs for an optional interface, which returns
// the outermost implementation along the chain. No decorator re-forwards an optional method by
// hand, so none can drop one, and decorators compose in any order.
//
// A decorator that enforces something (package access: permissions) implements every optional
// interface itself and has no Unwrap, so nothing reaches past it.

// FSWrapper is an FS decorator that exposes the FS it wraps.
type FSWrapper interface {
	Unwrap() FS
}

// UploadWrapper is an Upload decorator that exposes the Upload it wraps.
type UploadWrapper interface {
	Unwrap() Upload
}

// maxWraps bounds the walk: a cycle of wrappers is a bug, not a reason to hang.
const maxWraps = 64

// As returns the first of fsys and the stores it wraps (through FSWrapper) that implements T.
func As[T any](fsys FS) (T, bool) {
	for range maxWraps {
		if fsys == nil {
			break
		}
		if t, ok := fsys.(T); ok {
			return t, true
		}
		w, ok := fsys.(FSWrapper)
		if !ok {
			break
		}
		fsys = w.Unwrap()
	}
	var zero T
	return zero, false
}

// UploadAs returns the first of u and the uploads it wraps (through UploadWrapper) that
// implements T.
func UploadAs[T any](u Upload) (T, bool) {
	for range maxWraps {
		if u == nil {
			break
		}
		if t, ok := u.(T); ok {
			return t, true
		}
		w, ok := u.(UploadWrapper)
		if !ok {
			break
		}
		u = w.Unwrap()
	}
	var zero T
	return zero, false
}
