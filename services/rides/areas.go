package rides

import (
	_ "embed"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/rideshare-dbaas/rideshare/internal/httpx"
)

// areaCSV is a copy of the contract's AreaNameEnum.csv (header
// "Area No,Area Name", CRLF line ends).
//
//go:embed AreaNameEnum.csv
var areaCSV string

// Areas maps an area number to its name.
type Areas map[int]string

// ParseAreas reads an area list in the AreaNameEnum.csv format.
func ParseAreas(r io.Reader) (Areas, error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = 2
	head, err := cr.Read()
	if err != nil {
		return nil, fmt.Errorf("areas: header: %w", err)
	}
	if strings.TrimPrefix(head[0], "\ufeff") != "Area No" || head[1] != "Area Name" {
		return nil, fmt.Errorf("areas: unexpected header %q", head)
	}
	areas := Areas{}
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("areas: %w", err)
		}
		n, err := strconv.Atoi(rec[0])
		if err != nil || n < 1 {
			return nil, fmt.Errorf("areas: line %d: bad area number %q", len(areas)+2, rec[0])
		}
		if _, dup := areas[n]; dup {
			return nil, fmt.Errorf("areas: area %d listed twice", n)
		}
		areas[n] = rec[1]
	}
	if len(areas) == 0 {
		return nil, fmt.Errorf("areas: no areas")
	}
	return areas, nil
}

func (a Areas) errorFor(field string) *httpx.Error {
	return httpx.BadRequest("%s must be an area number 1..%d (an integer or a numeric string)", field, len(a))
}

// FromString parses an area given as a decimal string ("22").
func (a Areas) FromString(field, s string) (int, *httpx.Error) {
	if s == "" || len(s) > 9 || strings.TrimLeft(s, "0123456789") != "" {
		return 0, a.errorFor(field)
	}
	n, _ := strconv.Atoi(s)
	if _, ok := a[n]; !ok {
		return 0, a.errorFor(field)
	}
	return n, nil
}

// FromJSON parses an area given as a JSON integer (22) or a JSON string
// holding one ("22"). A missing value (nil or null) is reported as missing.
func (a Areas) FromJSON(field string, raw json.RawMessage) (int, *httpx.Error) {
	if len(raw) == 0 || string(raw) == "null" {
		return 0, httpx.BadRequest("field %q is missing (an area number is required)", field)
	}
	if raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return 0, a.errorFor(field)
		}
		return a.FromString(field, s)
	}
	// A JSON integer literal: digits only, no sign, fraction or exponent.
	return a.FromString(field, string(raw))
}
