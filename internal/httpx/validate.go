package httpx

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// ValidateUsername refuses what cannot be a username: the empty string,
// invalid UTF-8 and control characters. Anything else, however long or odd
// (SQL-looking text included), is a name. Both services use it, for U1, U2,
// R1's created_by and R4's username.
func ValidateUsername(name string) *Error {
	switch {
	case name == "":
		return BadRequest("username is empty")
	case !utf8.ValidString(name):
		return BadRequest("username is not valid UTF-8")
	case strings.ContainsFunc(name, unicode.IsControl):
		return BadRequest("username contains control characters")
	}
	return nil
}
