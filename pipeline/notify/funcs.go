package notify

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"text/template"
	"time"
)

// locale is how numbers, sizes, dates and durations are written in a language.
type locale struct {
	decimal, thousands string
	months, days       []string
	unknown            string // a time that is not known
	units              map[string][2]string
}

var locales = map[string]locale{
	"en": {
		decimal: ".", thousands: ",",
		months:  strings.Fields("Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec"),
		days:    strings.Fields("Sun Mon Tue Wed Thu Fri Sat"),
		unknown: "unknown",
		units: map[string][2]string{"day": {"day", "days"}, "hour": {"hour", "hours"},
			"minute": {"minute", "minutes"}, "second": {"second", "seconds"}},
	},
	"es": {
		decimal: ",", thousands: ".",
		months:  strings.Fields("ene feb mar abr may jun jul ago sep oct nov dic"),
		days:    strings.Fields("dom lun mar mié jue vie sáb"),
		unknown: "desconocida",
		units: map[string][2]string{"day": {"día", "días"}, "hour": {"hora", "horas"},
			"minute": {"minuto", "minutos"}, "second": {"segundo", "segundos"}},
	},
}

// funcs are the functions templates may call, written for lang:
//
//	size N        bytes as "1.5 MiB" ("1,5 MiB" in Spanish)
//	count N       an integer with thousands separators: "82,007" / "82.007"
//	when T        a time, UTC: "Sat 5 Dec 2026 21:23 UTC" / "sáb 5 dic 2026 21:23 UTC"
//	duration D    "24 hours" / "24 horas", "7 days" / "7 días"
//	plural N A B  A when N is 1, else B
//	upper S       S in capitals (sftp -> SFTP)
func funcs(lang string) template.FuncMap {
	l := locales[lang]
	return template.FuncMap{
		"size":     l.size,
		"count":    l.count,
		"when":     l.when,
		"duration": l.duration,
		"plural":   plural,
		"upper":    strings.ToUpper,
	}
}

func toInt(v any) (int64, error) {
	r := reflect.ValueOf(v)
	switch r.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return r.Int(), nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return int64(r.Uint()), nil
	}
	return 0, fmt.Errorf("want an integer, got %T", v)
}

func (l locale) count(v any) (string, error) {
	n, err := toInt(v)
	if err != nil {
		return "", fmt.Errorf("count: %w", err)
	}
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteString(l.thousands)
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String(), nil
	}
	return b.String(), nil
}

func (l locale) size(v any) (string, error) {
	n, err := toInt(v)
	if err != nil {
		return "", fmt.Errorf("size: %w", err)
	}
	if n < 1024 {
		return fmt.Sprintf("%d B", n), nil
	}
	f := float64(n)
	unit := ""
	for _, u := range []string{"KiB", "MiB", "GiB", "TiB"} {
		f, unit = f/1024, u
		if f < 1024 {
			break
		}
	}
	return strings.Replace(strconv.FormatFloat(f, 'f', 1, 64), ".", l.decimal, 1) + " " + unit, nil
}

func (l locale) when(t time.Time) string {
	if t.IsZero() {
		return l.unknown
	}
	t = t.UTC()
	return fmt.Sprintf("%s %d %s %d %02d:%02d UTC", l.days[t.Weekday()], t.Day(), l.months[t.Month()-1], t.Year(), t.Hour(), t.Minute())
}

func (l locale) duration(d time.Duration) string {
	for _, u := range []struct {
		name string
		d    time.Duration
	}{{"day", 24 * time.Hour}, {"hour", time.Hour}, {"minute", time.Minute}} {
		if d >= u.d && d%u.d == 0 {
			n := int64(d / u.d)
			return fmt.Sprintf("%d %s", n, plural(n, l.units[u.name][0], l.units[u.name][1]))
		}
	}
	n := int64(d.Round(time.Second) / time.Second)
	return fmt.Sprintf("%d %s", n, plural(n, l.units["second"][0], l.units["second"][1]))
}

func plural(v any, one, many string) string {
	if n, err := toInt(v); err == nil && n == 1 {
		return one
	}
	return many
}
