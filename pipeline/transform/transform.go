package transform

import (
	"context"
	"fmt"
	"io"
	"sync/atomic"
)

// File is one stream flowing through a chain: a name (the object's base name, or an archive
// entry's path) and its bytes. Body is read once, front to back.
type File struct {
	Name string
	Body io.Reader
}

// Transform turns one input into zero or more outputs. Apply calls emit synchronously, once per
// output, with a streamed Body; emit must consume (or abandon) that Body before returning. A
// 1->1 transform emits exactly once. Errors found while the Body is being read (a bad row, a
// checksum mismatch at EOF) surface from the Body's Read and again from Apply, so the consumer
// of an output must treat a read error as "this output is not valid" and not commit it.
type Transform interface {
	Apply(ctx context.Context, in File, emit func(File) error) error
}

// Step names a transform and its options, as written in a route's chain.
type Step struct {
	Name    string
	Options map[string]any
}

// Rejection means the input itself is bad (malformed CSV, wrong checksum, a zip bomb): it goes
// to quarantine and is never retried. Any other error from a transform is transient or
// internal. Match with errors.As.
type Rejection struct {
	Line   int64 // 1-based line of the input the problem was found on; 0 when not line-based
	Reason string
}

func (r *Rejection) Error() string {
	if r.Line > 0 {
		return fmt.Sprintf("line %d: %s", r.Line, r.Reason)
	}
	return r.Reason
}

func reject(line int64, format string, args ...any) *Rejection {
	return &Rejection{Line: line, Reason: fmt.Sprintf(format, args...)}
}

// Chain runs ts in order over in, streaming: each output of step i is the input of step i+1,
// and the outputs of the last step go to sink. With no steps, in goes to sink unchanged.
func Chain(ctx context.Context, ts []Transform, in File, sink func(File) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if len(ts) == 0 {
		return sink(in)
	}
	return ts[0].Apply(ctx, in, func(f File) error {
		return Chain(ctx, ts[1:], f, sink)
	})
}

// Counter counts records written by record-oriented transforms (csv-to-jsonl) during a chain.
// A nil *Counter ignores Add and reports 0.
type Counter struct{ n atomic.Int64 }

// Add adds n records.
func (c *Counter) Add(n int64) {
	if c != nil {
		c.n.Add(n)
	}
}

// Records reports the records counted so far.
func (c *Counter) Records() int64 {
	if c == nil {
		return 0
	}
	return c.n.Load()
}

type counterKey struct{}

// WithCounter returns a context carrying a fresh Counter; pass it to Chain and read
// Records(ctx) (or CounterFrom(ctx).Records()) afterwards.
func WithCounter(ctx context.Context) context.Context {
	return context.WithValue(ctx, counterKey{}, new(Counter))
}

// CounterFrom returns ctx's Counter, or nil (which ignores counts) when there is none.
func CounterFrom(ctx context.Context) *Counter {
	c, _ := ctx.Value(counterKey{}).(*Counter)
	return c
}

// Records reports the records counted in ctx's Counter (0 without one).
func Records(ctx context.Context) int64 { return CounterFrom(ctx).Records() }

// stage is the Body a 1->1 transform emits: a reader that remembers its first error, so Apply
// can report the transform's own failure (a Rejection) even when the consumer wrapped it
// without %w or replaced it with its own.
type stage struct {
	ctx context.Context
	r   io.Reader
	err error
}

func (s *stage) Read(p []byte) (int, error) {
	if s.err != nil {
		return 0, s.err
	}
	if err := s.ctx.Err(); err != nil {
		s.err = err
		return 0, err
	}
	n, err := s.r.Read(p)
	if err != nil {
		s.err = err
	}
	return n, err
}

// emitOne emits r as the single output named name, then reads whatever the consumer left so
// that validation and counts always cover the whole input.
func emitOne(ctx context.Context, name string, r io.Reader, emit func(File) error) error {
	s := &stage{ctx: ctx, r: r}
	emitErr := emit(File{Name: name, Body: s})
	if s.err != nil && s.err != io.EOF {
		return s.err // our own failure is the root cause
	}
	if emitErr != nil {
		return emitErr
	}
	if s.err == nil {
		if _, err := io.Copy(io.Discard, s); err != nil {
			return err
		}
	}
	return nil
}
