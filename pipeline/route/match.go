package route

import (
	"path"
	"slices"
	"strings"
	"time"
)

// Object is what routing knows about an arrived object.
type Object struct {
	Bucket string
	Key    string
	Size   int64
	// User is the uploader from the object's metadata (x-amz-meta-ferry-user, written by the
	// gateway); empty for S3-native uploads, whose user comes from the key (Route.UserOf).
	User string
}

// Ignored reports whether key is never routed: a directory marker (ends in "/"), a temporary name
// (Config.Ignore globs on the base name), or a key under any route's output or quarantine prefix
// (so outputs and rejects never loop back into the pipeline).
func (c *Config) Ignored(key string) bool {
	if key == "" || strings.HasSuffix(key, "/") {
		return true
	}
	name := path.Base(key)
	for _, g := range c.Ignore {
		if ok, _ := path.Match(g, name); ok {
			return true
		}
	}
	for _, r := range c.Routes {
		if r.underOwnKeys(key) {
			return true
		}
	}
	return false
}

func (r *Route) underOwnKeys(key string) bool {
	return (r.out != nil && strings.HasPrefix(key, r.out.prefix())) ||
		(r.quar != nil && strings.HasPrefix(key, r.quar.prefix()))
}

// Match returns the first route, in file order, whose match selects o. A batch marker
// (CompleteOn.Marker) is not a data file: see MatchMarker. Nor is the sidecar of an input that a
// sidecar-reading route takes ("a.csv.sha256" beside "a.csv"), whatever later route's glob would
// match its name: see SidecarOf.
func (c *Config) Match(o Object) (*Route, bool) {
	if c.Ignored(o.Key) {
		return nil, false
	}
	if _, _, ok := c.SidecarOf(o); ok {
		return nil, false
	}
	for _, r := range c.Routes {
		if r.selects(o) && !r.IsMarker(o.Key) {
			return r, true
		}
	}
	return nil, false
}

// MatchMarker returns the first route with complete_on whose prefix and user select o and whose
// marker glob matches its name: o completes that route's batch. Size bounds do not apply to
// markers (they are usually empty). The batch is the route's held files in the marker's directory.
func (c *Config) MatchMarker(o Object) (*Route, bool) {
	if c.Ignored(o.Key) {
		return nil, false
	}
	for _, r := range c.Routes {
		if r.IsMarker(o.Key) && r.selectsPlace(o) {
			return r, true
		}
	}
	return nil, false
}

// IsMarker reports whether key's name matches the route's batch marker glob.
func (r *Route) IsMarker(key string) bool {
	if r.CompleteOn == nil {
		return false
	}
	ok, _ := path.Match(r.CompleteOn.Marker, path.Base(key))
	return ok
}

// IsSidecar reports whether key names a sidecar (digest file) of this route's inputs.
func (r *Route) IsSidecar(key string) bool {
	return r.Sidecar != "" && strings.HasSuffix(key, "."+r.Sidecar)
}

// SidecarOf reports whether o is a sidecar (digest file) and of which input: o's key is an
// input's key plus "."+algorithm ("a.csv.sha256" -> "a.csv"), and the first route that would take
// that input reads sidecars of that algorithm. The input's size is not known here, so size
// bounds are not applied to it; which route really takes the input is up to Match on the input.
func (c *Config) SidecarOf(o Object) (input, algorithm string, ok bool) {
	for _, alg := range c.sidecarAlgorithms() {
		in, found := strings.CutSuffix(o.Key, "."+alg)
		if !found || in == "" || strings.HasSuffix(in, "/") {
			continue
		}
		if r := c.takerOf(Object{Bucket: o.Bucket, Key: in, User: o.User}); r != nil && r.Sidecar == alg {
			return in, alg, true
		}
	}
	return "", "", false
}

// sidecarAlgorithms lists the algorithms of the sidecars some route reads.
func (c *Config) sidecarAlgorithms() []string {
	var algs []string
	for _, r := range c.Routes {
		if r.Sidecar != "" && !slices.Contains(algs, r.Sidecar) {
			algs = append(algs, r.Sidecar)
		}
	}
	return algs
}

// takerOf is the first route whose place and glob select o, size bounds aside.
func (c *Config) takerOf(o Object) *Route {
	if c.Ignored(o.Key) {
		return nil
	}
	for _, r := range c.Routes {
		if r.selectsPlace(o) && r.globSelects(o.Key) && !r.IsMarker(o.Key) && !r.IsSidecar(o.Key) {
			return r
		}
	}
	return nil
}

// selects applies the whole match: place (prefix, user) plus glob and size bounds.
func (r *Route) selects(o Object) bool {
	m := r.Match
	if !r.selectsPlace(o) || r.IsSidecar(o.Key) {
		return false
	}
	if !r.globSelects(o.Key) {
		return false
	}
	if o.Size < int64(m.MinSize) || (m.MaxSize > 0 && o.Size > int64(m.MaxSize)) {
		return false
	}
	return true
}

// globSelects applies the glob to key's base name.
func (r *Route) globSelects(key string) bool {
	if r.Match.Glob == "" {
		return true
	}
	ok, _ := path.Match(r.Match.Glob, path.Base(key))
	return ok
}

// selectsPlace checks the prefix and the user. A route whose templates need {user} does not
// select an object whose user is unknown, rather than fail when its key is built.
func (r *Route) selectsPlace(o Object) bool {
	if !strings.HasPrefix(o.Key, r.Match.Prefix) {
		return false
	}
	user := r.UserOf(o)
	if r.Match.User != "" && user != r.Match.User {
		return false
	}
	return !r.needsUser || user != ""
}

// UserOf is the uploader of o: o.User (the gateway's metadata) when set, else the key segment
// right after UserFromPrefix ("incoming/alice/x.csv" -> "alice"), else "". A file directly under
// the prefix ("incoming/x.csv") has no user.
func (r *Route) UserOf(o Object) string {
	if o.User != "" {
		return o.User
	}
	rest, ok := strings.CutPrefix(o.Key, r.UserFromPrefix)
	if !ok {
		return ""
	}
	seg, _, found := strings.Cut(rest, "/")
	if !found {
		return ""
	}
	return seg
}

// dirOf is o's directory below the user's folder (UserFromPrefix + user + "/") when the key is in
// it, else below the match prefix's directory; "" when the file sits directly there.
func (r *Route) dirOf(o Object, user string) string {
	base := r.Match.Prefix[:strings.LastIndexByte(r.Match.Prefix, '/')+1]
	if user != "" && strings.HasPrefix(o.Key, r.UserFromPrefix+user+"/") {
		base = r.UserFromPrefix + user + "/"
	}
	rest := strings.TrimPrefix(o.Key, base)
	if i := strings.LastIndexByte(rest, '/'); i >= 0 {
		return rest[:i]
	}
	return ""
}

// OutputKey is the key of an output file of o: the output template with name being the file's
// name as the transform chain emitted it ("" = the input's base name). at gives {date}; pass a
// time derived from the event (its time), not the clock, so a retried event writes the same key.
func (r *Route) OutputKey(o Object, name string, at time.Time) (string, error) {
	return r.render(r.out, o, name, at)
}

// QuarantineKey is where o goes when it fails validation. A quarantine ending in "/" is a
// prefix: the input's base name is appended.
func (r *Route) QuarantineKey(o Object, at time.Time) (string, error) {
	return r.render(r.quar, o, "", at)
}

func (r *Route) render(t *template, o Object, name string, at time.Time) (string, error) {
	if name == "" {
		name = path.Base(o.Key)
	}
	user := r.UserOf(o)
	return t.render(vars{user: user, dir: r.dirOf(o, user), name: name, at: at})
}
