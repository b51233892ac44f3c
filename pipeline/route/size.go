package route

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Size is a number of bytes, written with a unit as in the gateway's config: "8MiB", "512KiB",
// "1GiB", "10MB"; IEC units are powers of 1024, SI units powers of 1000, a bare number is bytes.
type Size int64

var sizeUnits = map[string]float64{
	"": 1, "b": 1,
	"kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40,
	"kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12,
}

// ParseSize parses a size such as "8MiB".
func ParseSize(s string) (Size, error) {
	t := strings.TrimSpace(s)
	i := strings.IndexFunc(t, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
	if i < 0 {
		i = len(t)
	}
	num, unit := t[:i], strings.ToLower(strings.TrimSpace(t[i:]))
	mult, ok := sizeUnits[unit]
	f, err := strconv.ParseFloat(num, 64)
	if num == "" || !ok || err != nil {
		return 0, fmt.Errorf("invalid size %q (write e.g. 0, 100KiB, 1GiB)", s)
	}
	if v := f * mult; v < math.MaxInt64 {
		return Size(v), nil
	}
	return 0, fmt.Errorf("size %q is too large", s)
}

// UnmarshalText implements encoding.TextUnmarshaler, so sizes decode from YAML.
func (s *Size) UnmarshalText(b []byte) error {
	v, err := ParseSize(string(b))
	if err != nil {
		return err
	}
	*s = v
	return nil
}
