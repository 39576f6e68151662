package rides

import (
	"encoding/json"
	"strings"
	"testing"
)

func mustAreas(t testing.TB) Areas {
	t.Helper()
	a, err := ParseAreas(strings.NewReader(areaCSV))
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestParseAreas_EmbeddedList(t *testing.T) {
	a := mustAreas(t)
	if len(a) != 198 {
		t.Fatalf("%d areas, want 198", len(a))
	}
	for n := 1; n <= 198; n++ {
		if a[n] == "" || strings.ContainsAny(a[n], "\r\n") {
			t.Fatalf("area %d: %q", n, a[n])
		}
	}
	if a[1] != "Kempegowda Ward" {
		t.Fatalf("area 1 is %q", a[1])
	}
}

func TestParseAreas_Errors(t *testing.T) {
	tests := []struct{ name, in string }{
		{"empty", ""},
		{"bad header", "No,Name\r\n1,A\r\n"},
		{"no rows", "Area No,Area Name\r\n"},
		{"bad number", "Area No,Area Name\r\nx,A\r\n"},
		{"zero", "Area No,Area Name\r\n0,A\r\n"},
		{"duplicate", "Area No,Area Name\r\n1,A\r\n1,B\r\n"},
		{"three fields", "Area No,Area Name\r\n1,A,B\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := ParseAreas(strings.NewReader(tt.in)); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

func TestAreasFromJSON(t *testing.T) {
	a := mustAreas(t)
	tests := []struct {
		raw  string
		want int // 0: must fail
	}{
		{`22`, 22}, {`"22"`, 22}, {`1`, 1}, {`198`, 198}, {`"198"`, 198}, {`"022"`, 22},
		{`0`, 0}, {`199`, 0}, {`-1`, 0}, {`"-1"`, 0}, {`22.0`, 0}, {`2.2e1`, 0},
		{`"abc"`, 0}, {`""`, 0}, {`" 22"`, 0}, {`"22 "`, 0}, {`"+22"`, 0}, {`true`, 0},
		{`null`, 0}, {``, 0}, {`[22]`, 0}, {`{"a":1}`, 0}, {`99999999999999999999`, 0},
		{`"\u0032\u0032"`, 22},
	}
	for _, tt := range tests {
		t.Run(tt.raw, func(t *testing.T) {
			got, e := a.FromJSON("source", json.RawMessage(tt.raw))
			if tt.want == 0 {
				if e == nil {
					t.Fatalf("accepted as %d", got)
				}
				if e.Status != 400 || !strings.Contains(e.Msg, "source") {
					t.Fatalf("bad error %v", e)
				}
				return
			}
			if e != nil || got != tt.want {
				t.Fatalf("got %d %v, want %d", got, e, tt.want)
			}
		})
	}
}
