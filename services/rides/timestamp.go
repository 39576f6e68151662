package rides

import (
	"errors"
	"fmt"
	"time"
)

// TimestampLayout is the contract's DD-MM-YYYY:SS-MM-HH as a Go layout.
const TimestampLayout = "02-01-2006:05-04-15"

// ParseTimestamp parses s, strictly DD-MM-YYYY:SS-MM-HH (seconds, then
// minutes, then hours), as a wall time in loc. Every field has exactly its
// width in ASCII digits, the date must exist (29-02 only in leap years),
// hours are 00-23, minutes and seconds 00-59, years 0001-9999, and the wall
// time must exist in loc (not skipped by a daylight-saving change).
func ParseTimestamp(s string, loc *time.Location) (time.Time, error) {
	if len(s) != len("DD-MM-YYYY:SS-MM-HH") {
		return time.Time{}, errors.New("timestamp must be DD-MM-YYYY:SS-MM-HH")
	}
	for i, sep := range map[int]byte{2: '-', 5: '-', 10: ':', 13: '-', 16: '-'} {
		if s[i] != sep {
			return time.Time{}, errors.New("timestamp must be DD-MM-YYYY:SS-MM-HH")
		}
	}
	num := func(from, to int) (int, bool) {
		n := 0
		for i := from; i < to; i++ {
			c := s[i]
			if c < '0' || c > '9' {
				return 0, false
			}
			n = n*10 + int(c-'0')
		}
		return n, true
	}
	day, ok1 := num(0, 2)
	month, ok2 := num(3, 5)
	year, ok3 := num(6, 10)
	sec, ok4 := num(11, 13)
	min, ok5 := num(14, 16)
	hour, ok6 := num(17, 19)
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6) {
		return time.Time{}, errors.New("timestamp must be DD-MM-YYYY:SS-MM-HH with digits only")
	}
	switch {
	case year < 1:
		return time.Time{}, errors.New("timestamp: year must be 0001-9999")
	case month < 1 || month > 12:
		return time.Time{}, fmt.Errorf("timestamp: month %02d does not exist", month)
	case day < 1 || day > daysIn(time.Month(month), year):
		return time.Time{}, fmt.Errorf("timestamp: %02d-%02d-%04d is not a date", day, month, year)
	case hour > 23:
		return time.Time{}, fmt.Errorf("timestamp: hour %02d is not 00-23", hour)
	case min > 59:
		return time.Time{}, fmt.Errorf("timestamp: minute %02d is not 00-59", min)
	case sec > 59:
		return time.Time{}, fmt.Errorf("timestamp: second %02d is not 00-59", sec)
	}
	if loc == nil {
		loc = time.UTC
	}
	t := time.Date(year, time.Month(month), day, hour, min, sec, 0, loc)
	if t.Format(TimestampLayout) != s { // time.Date moved a skipped wall time
		return time.Time{}, fmt.Errorf("timestamp: %s does not exist in time zone %s", s, loc)
	}
	return t, nil
}

// FormatTimestamp formats the Unix time sec as DD-MM-YYYY:SS-MM-HH in loc.
func FormatTimestamp(sec int64, loc *time.Location) string {
	if loc == nil {
		loc = time.UTC
	}
	return time.Unix(sec, 0).In(loc).Format(TimestampLayout)
}

func daysIn(m time.Month, year int) int {
	switch m {
	case time.February:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	case time.April, time.June, time.September, time.November:
		return 30
	}
	return 31
}
