package phone

import "testing"

func TestParse(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{"+14155550123", "+14155550123"},
		{" +1 (415) 555-0123 ", "+14155550123"},
		{"+44 20 7946 0018", "+442079460018"},
		{"+4915123456789", "+4915123456789"},
		{"4155550123", ""},    // no country
		{"+1415555012", ""},   // too short for NANP
		{"+999123456789", ""}, // no such country code
		{"+1415555012x", ""},  // junk
		{"", ""},
	} {
		got, err := Parse(tc.in)
		if tc.want == "" {
			if err == nil {
				t.Errorf("Parse(%q) = %q, want an error", tc.in, got)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("Parse(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}
