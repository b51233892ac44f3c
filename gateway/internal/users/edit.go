package users

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"

	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
	"github.com/goccy/go-yaml/token"

	"github.com/ferrygw/ferry/pipeline/strictyaml"
)

// The admin edits below (used by `ferry user`) change the users file in place: the text is
// spliced at the lines goccy's parser locates, so comments and layout survive. Every result is
// decoded again and compared with the intended list of entries; if the splice did not produce
// exactly that (an unusual layout, e.g. flow style), the file is rewritten cleanly from the
// entries instead. Nothing invalid is ever written. A local file is replaced atomically (temp
// file + rename), so a running server's Watch never sees half a file; an S3 object is replaced
// with a conditional PutObject, so a concurrent edit is refused (ErrConflict), never lost.

// ErrUserExists and ErrNoUser report adding a user twice and editing one that is not there.
var (
	ErrUserExists = errors.New("user already exists")
	ErrNoUser     = errors.New("no such user")
)

// Add appends e to the users file, creating the file when it does not exist.
func Add(ctx context.Context, src Source, e Entry) error {
	if err := e.Check(); err != nil {
		return fmt.Errorf("add user %q: %w", e.Name, err)
	}
	return edit(ctx, src, true, func(entries []Entry) ([]Entry, error) {
		if indexOf(entries, e.Name) >= 0 {
			return nil, fmt.Errorf("add user %q: %w", e.Name, ErrUserExists)
		}
		return append(entries, e), nil
	}, func(d *document, entries []Entry) ([]byte, bool) { return d.appendEntry(e) })
}

// SetPassword sets name's password_hash to hash (a bcrypt hash, see HashPassword).
func SetPassword(ctx context.Context, src Source, name, hash string) error {
	return edit(ctx, src, false, func(entries []Entry) ([]Entry, error) {
		i := indexOf(entries, name)
		if i < 0 {
			return nil, fmt.Errorf("set password of %q: %w", name, ErrNoUser)
		}
		out := append([]Entry(nil), entries...)
		out[i].PasswordHash = hash
		return out, nil
	}, func(d *document, entries []Entry) ([]byte, bool) { return d.setPassword(indexOf(entries, name), hash) })
}

// Delete removes user name from the users file.
func Delete(ctx context.Context, src Source, name string) error {
	return edit(ctx, src, false, func(entries []Entry) ([]Entry, error) {
		i := indexOf(entries, name)
		if i < 0 {
			return nil, fmt.Errorf("delete user %q: %w", name, ErrNoUser)
		}
		return append(append([]Entry(nil), entries[:i]...), entries[i+1:]...), nil
	}, func(d *document, entries []Entry) ([]byte, bool) { return d.deleteEntry(indexOf(entries, name)) })
}

// AddS3Key gives user name the S3 access key k (its secret already sealed).
func AddS3Key(ctx context.Context, src Source, name string, k S3KeyEntry) error {
	return editEntry(ctx, src, name, "add an S3 key to", func(e *Entry) error {
		for _, have := range e.S3Keys {
			if have.ID == k.ID {
				return fmt.Errorf("access key %s exists", k.ID)
			}
		}
		e.S3Keys = append(e.S3Keys, k)
		return nil
	})
}

// ErrNoS3Key reports deleting an access key the user does not have.
var ErrNoS3Key = errors.New("no such S3 access key")

// DeleteS3Key removes user name's S3 access key id.
func DeleteS3Key(ctx context.Context, src Source, name, id string) error {
	return editEntry(ctx, src, name, "delete an S3 key of", func(e *Entry) error {
		for i, have := range e.S3Keys {
			if have.ID == id {
				e.S3Keys = append(e.S3Keys[:i:i], e.S3Keys[i+1:]...)
				return nil
			}
		}
		return fmt.Errorf("%s: %w", id, ErrNoS3Key)
	})
}

// editEntry changes user name's entry with change; the entry's lines are rewritten (comments
// inside that entry are lost, the rest of the file keeps its own).
func editEntry(ctx context.Context, src Source, name, what string, change func(*Entry) error) error {
	var changed Entry
	return edit(ctx, src, false, func(entries []Entry) ([]Entry, error) {
		i := indexOf(entries, name)
		if i < 0 {
			return nil, fmt.Errorf("%s %q: %w", what, name, ErrNoUser)
		}
		out := append([]Entry(nil), entries...)
		changed = out[i]
		changed.S3Keys = append([]S3KeyEntry(nil), changed.S3Keys...)
		if err := change(&changed); err != nil {
			return nil, fmt.Errorf("%s %q: %w", what, name, err)
		}
		if len(changed.S3Keys) == 0 {
			changed.S3Keys = nil // as the file decodes without the key
		}
		out[i] = changed
		return out, nil
	}, func(d *document, entries []Entry) ([]byte, bool) {
		return d.replaceEntry(indexOf(entries, name), changed)
	})
}

func indexOf(entries []Entry, name string) int {
	for i, e := range entries {
		if e.Name == name {
			return i
		}
	}
	return -1
}

// edit reads the file, computes the intended entries with change, splices the text with splice
// (falling back to a clean rewrite), checks the result and writes it back if the file is still
// the one read.
func edit(ctx context.Context, src Source, create bool, change func([]Entry) ([]Entry, error), splice func(*document, []Entry) ([]byte, bool)) error {
	cur, err := src.read(ctx)
	switch {
	case err == nil:
	case create && errors.Is(err, fs.ErrNotExist):
		cur = content{}
	default:
		return err
	}
	name := src.String()
	var f File
	if _, err := strictyaml.Decode(name, cur.data, &f, strictyaml.Options{}); err != nil {
		return fmt.Errorf("users file must be fixed first:\n%w", err)
	}
	want, err := change(f.Users)
	if err != nil {
		return err
	}
	out, ok := splice(&document{src: cur.data}, f.Users)
	if !ok || !sameEntries(out, want) {
		out = render(want)
	}
	if _, _, err := Parse(name, out); err != nil {
		return fmt.Errorf("users file would be invalid after the change:\n%w", err)
	}
	return src.write(ctx, out, cur)
}

func sameEntries(data []byte, want []Entry) bool {
	var f File
	if _, err := strictyaml.Decode("", data, &f, strictyaml.Options{}); err != nil {
		return false
	}
	if len(f.Users) == 0 && len(want) == 0 {
		return true
	}
	return reflect.DeepEqual(f.Users, want)
}

// document is the users file as lines, with the positions its parse gives.
type document struct {
	src []byte
}

// layout finds the users sequence. ok is false when the layout is not the plain block style
// the splicing understands.
type layout struct {
	lines   []string
	usersKV *ast.MappingValueNode // nil when there is no users key
	seq     *ast.SequenceNode     // nil when users is empty (null)
}

func (d *document) parse() (*layout, bool) {
	text := string(d.src)
	if text != "" && !strings.HasSuffix(text, "\n") {
		text += "\n"
	}
	l := &layout{lines: strings.SplitAfter(text, "\n")}
	l.lines = l.lines[:len(l.lines)-1] // the empty string after the last newline
	f, err := parser.ParseBytes([]byte(text), 0)
	if err != nil {
		return nil, false
	}
	var body ast.Node
	for _, doc := range f.Docs {
		if doc != nil && doc.Body != nil {
			body = doc.Body
		}
	}
	var pairs []*ast.MappingValueNode
	switch n := body.(type) {
	case nil:
	case *ast.MappingNode:
		if n.IsFlowStyle {
			return nil, false
		}
		pairs = n.Values
	case *ast.MappingValueNode:
		pairs = []*ast.MappingValueNode{n}
	default:
		return nil, false
	}
	for _, kv := range pairs {
		if kv.Key.GetToken().Value == "users" {
			l.usersKV = kv
		}
	}
	if l.usersKV == nil {
		return l, true
	}
	switch v := l.usersKV.Value.(type) {
	case *ast.NullNode:
	case *ast.SequenceNode:
		if v.IsFlowStyle || len(v.Entries) != len(v.Values) {
			return nil, false
		}
		for i, e := range v.Entries {
			m, isMap := v.Values[i].(*ast.MappingNode)
			if !isMap || m.IsFlowStyle || !l.startsLine(e.Start) {
				return nil, false
			}
		}
		l.seq = v
	default:
		return nil, false
	}
	return l, true
}

// startsLine reports whether tk is the first thing on its line.
func (l *layout) startsLine(tk *token.Token) bool {
	n, c := line(tk), column(tk)
	if n < 1 || n > len(l.lines) || c < 1 || c > len(l.lines[n-1]) {
		return false
	}
	return strings.TrimLeft(l.lines[n-1][:c-1], " ") == ""
}

func (d *document) appendEntry(e Entry) ([]byte, bool) {
	l, ok := d.parse()
	if !ok {
		return nil, false
	}
	switch {
	case l.usersKV == nil:
		out := strings.Join(l.lines, "")
		return []byte(out + "users:\n" + strings.Join(renderEntry(e, 2, 4), "")), true
	case l.seq == nil:
		at := line(l.usersKV.Key.GetToken()) // insert right after "users:"
		if strings.Contains(l.lines[at-1], "[") || strings.Contains(l.lines[at-1], "{") {
			return nil, false
		}
		keyIndent := indentOf(l.lines[at-1])
		return l.insert(at, renderEntry(e, keyIndent+2, keyIndent+4)), true
	}
	last := len(l.seq.Entries) - 1
	dash := column(l.seq.Entries[last].Start) - 1
	keyIndent := column(l.seq.Values[0].(*ast.MappingNode).Values[0].Key.GetToken()) - 1
	return l.insert(l.entryEnd(last), renderEntry(e, dash, keyIndent)), true
}

func (d *document) deleteEntry(i int) ([]byte, bool) {
	l, ok := d.parse()
	if !ok || l.seq == nil || i < 0 || i >= len(l.seq.Entries) {
		return nil, false
	}
	start, end := l.entryHead(i), l.entryEnd(i)
	out := append(append([]string(nil), l.lines[:start-1]...), l.lines[end:]...)
	return []byte(strings.Join(out, "")), true
}

// replaceEntry writes entry i anew, at its place and indentation.
func (d *document) replaceEntry(i int, e Entry) ([]byte, bool) {
	l, ok := d.parse()
	if !ok || l.seq == nil || i < 0 || i >= len(l.seq.Entries) {
		return nil, false
	}
	m, isMap := l.seq.Values[i].(*ast.MappingNode)
	if !isMap || len(m.Values) == 0 {
		return nil, false
	}
	dash := column(l.seq.Entries[i].Start) - 1
	key := column(m.Values[0].Key.GetToken()) - 1
	start, end := line(l.seq.Entries[i].Start), l.entryEnd(i)
	out := append(append(append([]string(nil), l.lines[:start-1]...), renderEntry(e, dash, key)...), l.lines[end:]...)
	return []byte(strings.Join(out, "")), true
}

func (d *document) setPassword(i int, hash string) ([]byte, bool) {
	l, ok := d.parse()
	if !ok || l.seq == nil || i < 0 || i >= len(l.seq.Entries) {
		return nil, false
	}
	m := l.seq.Values[i].(*ast.MappingNode)
	var nameKV, hashKV *ast.MappingValueNode
	for _, kv := range m.Values {
		switch kv.Key.GetToken().Value {
		case "name":
			nameKV = kv
		case "password_hash":
			hashKV = kv
		}
	}
	quoted := quote(hash)
	if hashKV == nil {
		if nameKV == nil {
			return nil, false
		}
		indent := column(nameKV.Key.GetToken()) - 1
		return l.insert(line(nameKV.Key.GetToken()), []string{strings.Repeat(" ", indent) + "password_hash: " + quoted + "\n"}), true
	}
	keyTok := hashKV.Key.GetToken()
	n := line(keyTok)
	text := l.lines[n-1]
	if line(hashKV.Value.GetToken()) != n {
		return nil, false // value on another line, e.g. a block scalar
	}
	// Keep what precedes the key and any comment after the value.
	keyCol := column(keyTok) - 1
	if keyCol > len(text) || !strings.HasPrefix(text[keyCol:], "password_hash") {
		return nil, false
	}
	if _, isStr := hashKV.Value.(*ast.StringNode); !isStr && !isNull(hashKV.Value) {
		return nil, false
	}
	comment := "" // a bcrypt hash holds no " #": the first one starts a comment
	if j := strings.Index(text[keyCol:], " #"); j >= 0 {
		comment = " " + strings.TrimSpace(text[keyCol+j:])
	}
	l.lines[n-1] = text[:keyCol] + "password_hash: " + quoted + comment + "\n"
	return []byte(strings.Join(l.lines, "")), true
}

func isNull(n ast.Node) bool { _, ok := n.(*ast.NullNode); return ok }

// insert puts new lines after line number after (1-based; 0 = at the top).
func (l *layout) insert(after int, add []string) []byte {
	out := append(append(append([]string(nil), l.lines[:after]...), add...), l.lines[after:]...)
	return []byte(strings.Join(out, ""))
}

// entryEnd returns the last line of entry i: lines more indented than its dash, not counting
// trailing blank and comment lines that belong to what follows.
func (l *layout) entryEnd(i int) int {
	dash := column(l.seq.Entries[i].Start) - 1
	limit := len(l.lines)
	if i+1 < len(l.seq.Entries) {
		limit = l.entryHead(i+1) - 1
	}
	end := line(l.seq.Entries[i].Start)
	for n := end + 1; n <= limit; n++ {
		t := l.lines[n-1]
		if blankOrComment(t) {
			continue
		}
		if indentOf(t) <= dash {
			break
		}
		end = n
	}
	return end
}

// entryHead returns the first line of entry i including the comment lines right above it.
func (l *layout) entryHead(i int) int {
	start := line(l.seq.Entries[i].Start)
	floor := line(l.usersKV.Key.GetToken())
	if i > 0 {
		floor = line(l.seq.Entries[i-1].Start)
	}
	for start-1 > floor && strings.HasPrefix(strings.TrimSpace(l.lines[start-2]), "#") {
		start--
	}
	return start
}

func blankOrComment(s string) bool {
	t := strings.TrimSpace(s)
	return t == "" || strings.HasPrefix(t, "#")
}

func indentOf(s string) int { return len(s) - len(strings.TrimLeft(s, " ")) }

func line(tk *token.Token) int {
	if tk == nil || tk.Position == nil {
		return 0
	}
	return tk.Position.Line
}

func column(tk *token.Token) int {
	if tk == nil || tk.Position == nil {
		return 0
	}
	return tk.Position.Column
}

// render writes entries as a complete users file (used when splicing is not possible).
func render(entries []Entry) []byte {
	var b bytes.Buffer
	b.WriteString("# Ferry users file (see configs/users.example.yaml). Written by `ferry user`.\n")
	if len(entries) == 0 {
		b.WriteString("users: []\n")
		return b.Bytes()
	}
	b.WriteString("users:\n")
	for _, e := range entries {
		for _, l := range renderEntry(e, 2, 4) {
			b.WriteString(l)
		}
	}
	return b.Bytes()
}

// renderEntry writes one list item with its dash at column dash and keys at column key.
func renderEntry(e Entry, dash, key int) []string {
	pad := strings.Repeat(" ", key)
	first := strings.Repeat(" ", dash) + "-" + strings.Repeat(" ", max(1, key-dash-1))
	out := []string{first + "name: " + quote(e.Name) + "\n"}
	add := func(k, v string) { out = append(out, pad+k+": "+v+"\n") }
	if e.PasswordHash != "" {
		add("password_hash", quote(e.PasswordHash))
	}
	if len(e.PublicKeys) > 0 {
		out = append(out, pad+"public_keys:\n")
		for _, k := range e.PublicKeys {
			out = append(out, pad+"  - "+quote(k)+"\n")
		}
	}
	if e.Auth != "" { // as written, so a rewritten entry decodes as it was
		add("auth", quote(e.Auth))
	}
	if e.Bucket != "" {
		add("bucket", quote(e.Bucket))
	}
	add("home", quote(e.Home))
	add("permissions", quoteList(e.Permissions))
	if len(e.AllowedCIDRs) > 0 {
		add("allowed_cidrs", quoteList(e.AllowedCIDRs))
	}
	if e.Protocols != nil {
		add("protocols", quoteList(e.Protocols))
	}
	if e.FTPPasswordOnly {
		add("ftp_password_only", "true")
	}
	if e.Disabled {
		add("disabled", "true")
	}
	if len(e.S3Keys) > 0 {
		out = append(out, pad+"s3_keys:\n")
		for _, k := range e.S3Keys {
			out = append(out, pad+"  - id: "+quote(k.ID)+"\n", pad+"    secret: "+quote(k.Secret)+"\n")
			if k.Created != "" {
				out = append(out, pad+"    created: "+quote(k.Created)+"\n")
			}
		}
	}
	return out
}

// quote writes s as a YAML double-quoted scalar (a JSON string is one).
func quote(s string) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s)
	return strings.TrimSuffix(b.String(), "\n")
}

func quoteList(list []string) string {
	q := make([]string, len(list))
	for i, s := range list {
		q[i] = quote(s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// writeAtomic replaces path with data: a temporary file in the same folder, synced, then
// renamed over it (if check, called just before, allows it), keeping the old file's mode and
// (when allowed) owner.
func writeAtomic(path string, data []byte, perm fs.FileMode, old fs.FileInfo, check func() error) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("users: write: %w", err)
	}
	name := tmp.Name()
	defer os.Remove(name) // after a successful rename there is nothing left to remove
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return fmt.Errorf("users: write: %w", err)
	}
	if old != nil {
		keepOwner(tmp, old)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("users: write: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("users: write: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("users: write: %w", err)
	}
	if err := check(); err != nil {
		return err
	}
	if err := os.Rename(name, path); err != nil {
		return fmt.Errorf("users: write: %w", err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}
