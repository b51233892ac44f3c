package notify

import (
	"strings"
	"unicode"

	"golang.org/x/text/unicode/norm"
)

// WireSubject makes a subject SNS accepts: SNS refuses a Subject that is not ASCII, holds control
// characters or is 100 characters or longer (the message itself is UTF-8). Accented letters lose
// their accents ("línea" -> "linea", "Größe" -> "Grosse"), a few signs get ASCII spellings,
// anything else becomes "?", control characters spaces; then it is cut to MaxSubject.
func WireSubject(s string) string {
	var b strings.Builder
	for _, r := range norm.NFD.String(s) {
		switch {
		case unicode.Is(unicode.Mn, r):
			// a combining accent, split off its letter by NFD
		case r < 0x20 || r == 0x7f:
			b.WriteByte(' ')
		case r < 0x80:
			b.WriteRune(r)
		default:
			if t, ok := ascii[r]; ok {
				b.WriteString(t)
			} else {
				b.WriteByte('?')
			}
		}
	}
	out := strings.TrimSpace(b.String())
	if out == "" {
		return "Notification"
	}
	return TruncateSubject(out)
}

// ascii spells the letters NFD does not decompose, and common typography, in ASCII.
var ascii = map[rune]string{
	'ß': "ss", 'æ': "ae", 'Æ': "AE", 'ø': "o", 'Ø': "O", 'œ': "oe", 'Œ': "OE", 'ł': "l", 'Ł': "L",
	'đ': "d", 'Đ': "D", 'ð': "d", 'þ': "th", 'Þ': "Th", 'ı': "i",
	'¿': "", '¡': "", '«': `"`, '»': `"`, '“': `"`, '”': `"`, '„': `"`, '‘': "'", '’': "'",
	'–': "-", '—': "-", '…': "...", '·': ".", '×': "x", '€': "EUR", '°': " deg", 'º': "o", 'ª': "a",
	'\u00a0': " ",
}
