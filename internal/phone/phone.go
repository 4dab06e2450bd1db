// Package phone parses phone numbers into E.164, the one spelling Herald keys
// recipients by, with libphonenumber's metadata (github.com/nyaruka/phonenumbers), so
// that "+1 (415) 555-0123" and "+14155550123" are the same person and numbers that
// cannot exist are refused.
package phone

import (
	"errors"
	"strings"

	"github.com/nyaruka/phonenumbers"
)

// ErrInvalid is returned for anything that is not a valid international number.
var ErrInvalid = errors.New("not a valid phone number in international (E.164) form, e.g. +14155550123")

// Parse returns number in E.164 form. The number must be international (start with +)
// and valid for its country's numbering plan.
func Parse(number string) (string, error) {
	n := strings.TrimSpace(number)
	if !strings.HasPrefix(n, "+") || len(n) > 32 {
		return "", ErrInvalid
	}
	p, err := phonenumbers.Parse(n, "")
	if err != nil || !phonenumbers.IsValidNumber(p) {
		return "", ErrInvalid
	}
	return phonenumbers.Format(p, phonenumbers.E164), nil
}
