package storagetest

import (
	"errors"
	"io/fs"
	"strings"
	"testing"

	"github.com/ferrygw/ferry/gateway/internal/storage"
)

// testJail attacks a sibling home from another one with every path trick a client can send and
// checks the sibling is untouched, and that whatever succeeded landed inside the attacker's home.
func testJail(t *testing.T, newFS func(t *testing.T) storage.FS) {
	attacker, victim := newFS(t), newFS(t)
	ctx := t.Context()
	mustMkdir(t, victim, "/secret")
	secret := []byte("the victim's data")
	writeFile(t, victim, "/secret/file", secret)
	writeFile(t, victim, "/top", secret)

	sibling := "victim" // without HomePrefixer, aim at a plausible name
	if hp, ok := victim.(HomePrefixer); ok {
		p := strings.TrimSuffix(hp.HomePrefix(), "/")
		sibling = p[strings.LastIndex(p, "/")+1:]
	}
	var paths []string
	for _, up := range []string{"..", "../..", "../../..", "/..", "/../..", "./../..", "a/../../..", "../../../../../../../.."} {
		paths = append(paths, up+"/"+sibling+"/secret/file", up+"/"+sibling+"/top")
	}
	if hp, ok := victim.(HomePrefixer); ok {
		paths = append(paths, "../../../"+hp.HomePrefix()+"secret/file", "/../"+hp.HomePrefix()+"top")
	}
	paths = append(paths,
		"..\\"+sibling+"\\top", "..\\..\\"+sibling+"\\secret\\file",
		"%2f..%2f"+sibling+"%2ftop", "..%2f"+sibling+"%2ftop", "%2e%2e/"+sibling+"/top",
		"../"+sibling+"/top\x00", "../\x00/"+sibling+"/top",
	)
	// The clamped paths exist in the attacker's home too, so the attacks really run there.
	mustMkdir(t, attacker, "/"+sibling)
	mustMkdir(t, attacker, "/"+sibling+"/secret")
	mustMkdir(t, attacker, "/mine")
	writeFile(t, attacker, "/mine/f", []byte("mine"))
	for _, p := range paths {
		_, _ = attacker.Stat(ctx, p)
		_ = attacker.List(ctx, p, func(*storage.Entry) error { return nil })
		if r, err := attacker.Open(ctx, p); err == nil {
			b := make([]byte, len(secret))
			if n, _ := r.ReadAt(b, 0); string(b[:n]) == string(secret) {
				t.Errorf("open %q read the victim's file", p)
			}
			_ = r.Close()
		}
		_ = tryWrite(ctx, attacker, p, []byte("overwritten"), defaultOpts)
		_ = attacker.Remove(ctx, p)
		_ = attacker.Rmdir(ctx, p)
		_ = attacker.Mkdir(ctx, p)
		_ = attacker.Rename(ctx, "/mine/f", p)
		_ = attacker.Rename(ctx, p, "/mine/stolen")
		if ss, ok := storage.As[storage.Setstater](attacker); ok {
			mode := fs.FileMode(0o777)
			_ = ss.SetStat(ctx, p, storage.Attrs{Mode: &mode})
		}
		if h, ok := storage.As[storage.Hasher](attacker); ok {
			_, _ = h.SHA256(ctx, p)
		}
		if !errors.Is(checkClean(p), storage.ErrInvalidPath) {
			continue
		}
		// Refused inputs never reach the store.
		if _, err := attacker.Stat(ctx, p); !errors.Is(err, storage.ErrInvalidPath) {
			t.Errorf("stat %q: %v, want ErrInvalidPath", p, err)
		}
	}
	wantContent(t, victim, "/secret/file", secret)
	wantContent(t, victim, "/top", secret)
	wantList(t, victim, "/", "secret/", "top")
	wantList(t, victim, "/secret", "file")
	if e := mustStat(t, victim, "/top"); e.Mode != 0 {
		t.Errorf("victim's mode changed to %v", e.Mode)
	}
	// A write aimed outside lands inside the attacker's home, at the clamped path.
	if err := tryWrite(ctx, attacker, "../../"+sibling+"/landed", []byte("mine"), defaultOpts); err != nil {
		t.Fatalf("clamped write: %v", err)
	}
	wantContent(t, attacker, "/"+sibling+"/landed", []byte("mine"))
	wantNotExist(t, victim, "/landed")
	wantContent(t, victim, "/top", secret)
}

// checkClean says whether a path is one the jail must refuse outright.
func checkClean(p string) error {
	if strings.ContainsAny(p, "\\\x00") {
		return storage.ErrInvalidPath
	}
	return nil
}
