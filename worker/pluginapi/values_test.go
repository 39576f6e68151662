package pluginapi

import (
	"strings"
	"testing"
)

func TestRowsScan(t *testing.T) {
	rows := Rows{Columns: []string{"id", "name"}, Values: [][]any{{int64(7), "zoe"}, {nil, "x"}, {2.5, []byte("b")}}}
	var id int64
	var name string
	if err := rows.Scan(0, &id, &name); err != nil || id != 7 || name != "zoe" {
		t.Fatalf("row 0: %d %q %v", id, name, err)
	}
	tests := []struct {
		name string
		row  int
		dest []any
		want string
	}{
		{"NULL integer", 1, []any{&id, &name}, "column id: unexpected NULL"},
		{"fractional float", 2, []any{&id, &name}, "not an integer"},
		{"too few destinations", 0, []any{&id}, "has 2 columns, want 1"},
		{"row out of range", 3, []any{&id, &name}, "row 3 of a result with 3 rows"},
		{"unsupported destination", 0, []any{&id, new(bool)}, "cannot scan into *bool"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := rows.Scan(tt.row, tt.dest...)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}
}
