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
