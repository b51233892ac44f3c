package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/term"

	"github.com/ferrygw/ferry/gateway/internal/users"
)

// readPassword reads a password from stdin: from a terminal without echo (twice when confirm
// is set), otherwise the first line (for scripts: `printf '%s\n' "$PW" | ferry …`).
func readPassword(stdin io.Reader, stderr io.Writer, confirm bool) (string, error) {
	var pw string
	if f, ok := stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		first, err := promptHidden(f, stderr, "Password: ")
		if err != nil {
			return "", err
		}
		if confirm {
			again, err := promptHidden(f, stderr, "Password again: ")
			if err != nil {
				return "", err
			}
			if again != first {
				return "", errors.New("passwords do not match")
			}
		}
		pw = first
	} else {
		line, err := bufio.NewReader(stdin).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return "", fmt.Errorf("read password: %w", err)
		}
		pw = strings.TrimRight(line, "\r\n")
	}
	switch {
	case pw == "":
		return "", errors.New("empty password")
	case len(pw) > 72:
		return "", errors.New("password longer than 72 bytes (bcrypt's limit)")
	}
	return pw, nil
}

func promptHidden(f *os.File, stderr io.Writer, prompt string) (string, error) {
	fmt.Fprint(stderr, prompt)
	b, err := term.ReadPassword(int(f.Fd()))
	fmt.Fprintln(stderr)
	if err != nil {
		return "", fmt.Errorf("read password: %w", err)
	}
	return string(b), nil
}

func hashPassword(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := newFlags("hash-password", "ferry hash-password < password\n\nPrints the bcrypt hash (cost 12) of the password read on stdin, for password_hash.", stderr)
	if _, code, ok := parse(fs, args, 0); !ok {
		return code
	}
	pw, err := readPassword(stdin, stderr, true)
	if err != nil {
		fmt.Fprintf(stderr, "hash-password: %v\n", err)
		return 1
	}
	h, err := users.HashPassword(pw)
	if err != nil {
		fmt.Fprintf(stderr, "hash-password: %v\n", err)
		return 1
	}
	fmt.Fprintln(stdout, h)
	return 0
}
