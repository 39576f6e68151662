package rides

import (
	"testing"
	"time"
	_ "time/tzdata" // the zone tests must not depend on the host's zoneinfo
)

func TestParseTimestamp(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want time.Time // zero: must fail
	}{
		{"contract example", "26-01-2027:00-53-09", time.Date(2027, 1, 26, 9, 53, 0, 0, time.UTC)},
		{"seconds minutes hours order", "01-02-2030:05-04-03", time.Date(2030, 2, 1, 3, 4, 5, 0, time.UTC)},
		{"midnight", "01-01-2000:00-00-00", time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)},
		{"last second of day", "31-12-1999:59-59-23", time.Date(1999, 12, 31, 23, 59, 59, 0, time.UTC)},
		{"29 Feb leap year", "29-02-2024:00-00-12", time.Date(2024, 2, 29, 12, 0, 0, 0, time.UTC)},
		{"29 Feb 2000 (div by 400)", "29-02-2000:00-00-12", time.Date(2000, 2, 29, 12, 0, 0, 0, time.UTC)},
		{"year 0001", "02-01-0001:01-00-00", time.Date(1, 1, 2, 0, 0, 1, 0, time.UTC)},
		{"year 9999", "31-12-9999:59-59-23", time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)},
		{"29 Feb non-leap", "29-02-2027:00-00-12", time.Time{}},
		{"29 Feb 1900 (div by 100)", "29-02-1900:00-00-12", time.Time{}},
		{"31 Feb", "31-02-2027:00-00-10", time.Time{}},
		{"31 April", "31-04-2027:00-00-10", time.Time{}},
		{"day 00", "00-01-2027:00-00-10", time.Time{}},
		{"day 32", "32-01-2027:00-00-10", time.Time{}},
		{"month 00", "26-00-2027:00-53-09", time.Time{}},
		{"month 13", "26-13-2027:00-53-09", time.Time{}},
		{"hour 24", "26-01-2027:00-53-24", time.Time{}},
		{"minute 60", "26-01-2027:00-60-09", time.Time{}},
		{"second 60", "26-01-2027:60-53-09", time.Time{}},
		{"year 0000", "26-01-0000:00-53-09", time.Time{}},
		{"wrong order (hours first)", "26-01-2027:09-53-00x", time.Time{}},
		{"ISO", "2027-01-26T09:53:00", time.Time{}},
		{"year first", "2027-01-26:00-53-09", time.Time{}},
		{"single-digit day", "6-01-2027:00-53-09", time.Time{}},
		{"two-digit year", "26-01-27:00-53-09", time.Time{}},
		{"colons", "26-01-2027:00:53:09", time.Time{}},
		{"slashes", "26/01/2027:00-53-09", time.Time{}},
		{"sign in field", "+6-01-2027:00-53-09", time.Time{}},
		{"space in field", " 6-01-2027:00-53-09", time.Time{}},
		{"unicode digit", "２6-01-2027:00-53-0", time.Time{}},
		{"trailing space", "26-01-2027:00-53-09 ", time.Time{}},
		{"empty", "", time.Time{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseTimestamp(tt.in, time.UTC)
			if tt.want.IsZero() {
				if err == nil {
					t.Fatalf("accepted %q as %v", tt.in, got)
				}
				return
			}
			if err != nil || !got.Equal(tt.want) {
				t.Fatalf("got %v %v, want %v", got, err, tt.want)
			}
			if back := FormatTimestamp(got.Unix(), time.UTC); back != tt.in {
				t.Fatalf("formatted back as %q", back)
			}
		})
	}
}

func TestParseTimestamp_TimeZones(t *testing.T) {
	kolkata, err := time.LoadLocation("Asia/Kolkata")
	if err != nil {
		t.Fatal(err)
	}
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseTimestamp("26-01-2027:00-53-09", kolkata)
	if err != nil || got.Unix() != time.Date(2027, 1, 26, 4, 23, 0, 0, time.UTC).Unix() {
		t.Fatalf("Kolkata: %v %v", got, err)
	}
	if s := FormatTimestamp(got.Unix(), kolkata); s != "26-01-2027:00-53-09" {
		t.Fatalf("Kolkata back: %s", s)
	}
	// 28 Mar 2027 02:30 does not exist in Berlin (clocks jump 02:00 -> 03:00).
	if _, err := ParseTimestamp("28-03-2027:00-30-02", berlin); err == nil {
		t.Fatal("accepted a wall time skipped by DST")
	}
	if _, err := ParseTimestamp("28-03-2027:00-30-03", berlin); err != nil {
		t.Fatalf("rejected a real time: %v", err)
	}
}

func FuzzParseTimestamp(f *testing.F) {
	for _, seed := range []string{
		"26-01-2027:00-53-09", "29-02-2024:00-00-12", "29-02-2027:00-00-12",
		"31-12-9999:59-59-23", "26-01-2027:00-53-24", "2027-01-26T09:53:00",
		"00-00-0000:00-00-00", "", "99-99-9999:99-99-99", "26-01-2027:00-53-0\xff",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tm, err := ParseTimestamp(s, time.UTC)
		if err != nil {
			return
		}
		// Whatever parses formats back to exactly the same text.
		if back := FormatTimestamp(tm.Unix(), time.UTC); back != s {
			t.Fatalf("%q parsed as %v, formats back as %q", s, tm, back)
		}
	})
}
