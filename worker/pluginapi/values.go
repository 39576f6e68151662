package pluginapi

import (
	"fmt"
	"math"
)

// Int64 reads an INTEGER value of a Rows cell. An integral float64 within
// the exactly representable range is accepted too, in case a transport
// widened it. col names the column in the error.
func Int64(v any, col string) (int64, error) {
	switch x := v.(type) {
	case int64:
		return x, nil
	case float64:
		const exact = 1 << 53
		if x == math.Trunc(x) && x >= -exact && x <= exact {
			return int64(x), nil
		}
		return 0, fmt.Errorf("column %s: float %v is not an integer", col, x)
	case nil:
		return 0, fmt.Errorf("column %s: unexpected NULL", col)
	default:
		return 0, fmt.Errorf("column %s: unexpected %T, want integer", col, v)
	}
}

// String reads a TEXT value of a Rows cell (a BLOB is taken as its bytes).
func String(v any, col string) (string, error) {
	switch x := v.(type) {
	case string:
		return x, nil
	case []byte:
		return string(x), nil
	case nil:
		return "", fmt.Errorf("column %s: unexpected NULL", col)
	default:
		return "", fmt.Errorf("column %s: unexpected %T, want text", col, v)
	}
}

// Scan reads row i of r into dest, one *int64 or *string per column (as
// Int64 and String do), checking the row has exactly that many columns.
func (r Rows) Scan(i int, dest ...any) error {
	if i < 0 || i >= len(r.Values) {
		return fmt.Errorf("row %d of a result with %d rows", i, len(r.Values))
	}
	row := r.Values[i]
	if len(row) != len(dest) {
		return fmt.Errorf("row %d has %d columns, want %d", i, len(row), len(dest))
	}
	for j, d := range dest {
		col := fmt.Sprint(j + 1)
		if j < len(r.Columns) {
			col = r.Columns[j]
		}
		var err error
		switch p := d.(type) {
		case *int64:
			*p, err = Int64(row[j], col)
		case *string:
			*p, err = String(row[j], col)
		default:
			return fmt.Errorf("row %d: cannot scan into %T", i, d)
		}
		if err != nil {
			return err
		}
	}
	return nil
}
