package s3keys

import (
	"bytes"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
)

func TestSealOpen(t *testing.T) {
	kek := bytes.Repeat([]byte{7}, KeySize)
	s, err := NewSealer(kek)
	if err != nil {
		t.Fatal(err)
	}
	other, _ := NewSealer(bytes.Repeat([]byte{8}, KeySize))
	id, secret, err := New()
	if err != nil {
		t.Fatal(err)
	}
	if CheckID(id) != nil || !strings.HasPrefix(id, IDPrefix) || len(id) != 20 || len(secret) != 40 {
		t.Fatalf("id %q secret of %d characters", id, len(secret))
	}
	sealed, err := s.Seal("alice", id, secret)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(sealed, secret) || CheckSealed(sealed) != nil {
		t.Fatalf("sealed %q", sealed)
	}
	again, _ := s.Seal("alice", id, secret)
	if again == sealed {
		t.Error("two seals of one secret are equal: the nonce is not random")
	}
	if got, err := s.Open("alice", id, sealed); err != nil || got != secret {
		t.Fatalf("open: %q %v", got, err)
	}
	flipped := []byte(sealed)
	flipped[len(flipped)-3] ^= 1
	cases := []struct {
		name, user, id, sealed string
		sealer                 *Sealer
		wrongKey               bool
	}{
		{"another user's entry", "bob", id, sealed, s, false},
		{"another key id", "alice", "FRYAAAAAAAAAAAAAAAAA", sealed, s, false},
		{"altered", "alice", id, string(flipped), s, false},
		{"another key-encryption key", "alice", id, sealed, other, true},
		{"not sealed", "alice", id, secret, s, false},
	}
	for _, c := range cases {
		got, err := c.sealer.Open(c.user, c.id, c.sealed)
		if err == nil {
			t.Errorf("%s: opened to %q", c.name, got)
		}
		if errors.Is(err, ErrWrongKey) != c.wrongKey {
			t.Errorf("%s: %v", c.name, err)
		}
		if err != nil && strings.Contains(err.Error(), secret) {
			t.Errorf("%s: the error shows the secret", c.name)
		}
	}
}

func TestParseKEK(t *testing.T) {
	raw := bytes.Repeat([]byte{0xfb}, KeySize)
	for _, s := range []string{base64.StdEncoding.EncodeToString(raw), base64.RawURLEncoding.EncodeToString(raw),
		strings.Repeat("fb", KeySize), " " + base64.StdEncoding.EncodeToString(raw) + "\n"} {
		if k, err := ParseKEK(s); err != nil || !bytes.Equal(k, raw) {
			t.Errorf("ParseKEK(%q) = %x, %v", s, k, err)
		}
	}
	for _, s := range []string{"", "short", base64.StdEncoding.EncodeToString(raw[:16])} {
		if _, err := ParseKEK(s); err == nil {
			t.Errorf("ParseKEK(%q) accepted", s)
		}
	}
}

func TestCheckID(t *testing.T) {
	for id, ok := range map[string]bool{"FRYABCDEFGHIJKLMNOPQ": true, "AKIAIOSFODNN7EXAMPLE": true, "short": false,
		"FRYabcdefghijklmnopq": false, "FRY/ABCDEFGHIJKLMNOP": false} {
		if (CheckID(id) == nil) != ok {
			t.Errorf("CheckID(%q) = %v", id, CheckID(id))
		}
	}
}
