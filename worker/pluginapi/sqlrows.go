package pluginapi

import (
	"database/sql"
	"fmt"
	"time"
)

// ScanRows reads a whole query result into Rows and closes it: what a DB
// implementation over database/sql (the worker's, or a test's) returns
// from Query. Values come back as SQLite's storage classes — nil, int64,
// float64, string, []byte — so they cross the plugin boundary unchanged;
// a declared DATE/TIME column (which the driver returns as time.Time)
// becomes RFC 3339 text and a bool 0 or 1, and any other type is an error.
func ScanRows(rows *sql.Rows) (Rows, error) {
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return Rows{}, err
	}
	out := Rows{Columns: cols, Values: [][]any{}}
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return Rows{}, err
		}
		for i, v := range vals {
			switch x := v.(type) {
			case nil, int64, float64, string, []byte:
			case time.Time:
				vals[i] = x.UTC().Format(time.RFC3339Nano)
			case bool:
				vals[i] = int64(0)
				if x {
					vals[i] = int64(1)
				}
			default:
				return Rows{}, fmt.Errorf("column %s: driver returned %T", cols[i], v)
			}
		}
		out.Values = append(out.Values, vals)
	}
	return out, rows.Err()
}
