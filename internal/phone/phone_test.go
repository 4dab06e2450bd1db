package phone

import (
	"fmt"
	"testing"
)

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

// TestRememberedAnswersAreTheSame: a spelling asked again, valid or not, gets the
// answer it got the first time; and however many spellings are remembered, the cache
// holds at most two generations.
func TestRememberedAnswersAreTheSame(t *testing.T) {
	t.Parallel()
	for range 2 {
		if got, err := Parse("+1 (415) 555-0199"); err != nil || got != "+14155550199" {
			t.Fatalf("Parse = %q, %v", got, err)
		}
		if _, err := Parse("+999123456789"); err != ErrInvalid {
			t.Fatalf("an invalid number: %v", err)
		}
	}
	c := &cache{cur: map[string]string{}, limit: 4}
	for i := range 30 {
		c.put(fmt.Sprint(i), "x")
	}
	if n := len(c.cur) + len(c.old); n > 8 {
		t.Fatalf("the cache holds %d answers, over two generations of 4", n)
	}
	if _, ok := c.get("29"); !ok {
		t.Fatal("the newest answer is not remembered")
	}
}

// BenchmarkParse compares a number parsed for the first time with one parsed again
// (from the cache), in one run.
func BenchmarkParse(b *testing.B) {
	b.Run("first", func(b *testing.B) {
		b.ReportAllocs()
		for i := range b.N {
			parse(fmt.Sprintf("+1415555%04d", i%10000))
		}
	})
	b.Run("again", func(b *testing.B) {
		Parse("+14155550123")
		b.ReportAllocs()
		for range b.N {
			Parse("+14155550123")
		}
	})
}

// TestCacheKeepsWhatIsInUse: an answer looked up while the generations turn over is
// never dropped, and the cache never holds more than two generations.
func TestCacheKeepsWhatIsInUse(t *testing.T) {
	t.Parallel()
	c := &cache{cur: map[string]string{}, limit: 4}
	c.put("hot", "+1")
	for i := range 100 {
		c.put(fmt.Sprint("cold", i), "+2")
		if _, ok := c.get("hot"); !ok {
			t.Fatalf("the answer in use was dropped after %d others", i+1)
		}
		if n := len(c.cur) + len(c.old); n > 2*c.limit {
			t.Fatalf("%d answers held, over two generations of %d", n, c.limit)
		}
	}
}
