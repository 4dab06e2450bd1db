package business

import "testing"

// TestStepDown walks the tiers: the new-recipient limit drops to the next tier below
// it, and once it is at the lowest tier the rate and burst halve, down to a floor that
// never lifts a limit the operator set lower. No case raises any limit.
func TestStepDown(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		in, want Limits
	}{
		{"unlimited to the top tier", Limits{10, 20, 0}, Limits{10, 20, 100_000}},
		{"above the top tier to it", Limits{10, 20, 150_000}, Limits{10, 20, 100_000}},
		{"top tier to the next", Limits{10, 20, 100_000}, Limits{10, 20, 10_000}},
		{"between tiers to the one below", Limits{10, 20, 50_000}, Limits{10, 20, 10_000}},
		{"to the lowest tier", Limits{10, 20, 10_000}, Limits{10, 20, 1_000}},
		{"just above the lowest tier", Limits{10, 20, 1_001}, Limits{10, 20, 1_000}},
		{"lowest tier: rate and burst halve", Limits{10, 20, 1_000}, Limits{5, 10, 1_000}},
		{"below the lowest tier: rate and burst halve", Limits{10, 20, 500}, Limits{5, 10, 500}},
		{"odd burst rounds down", Limits{3, 3, 1_000}, Limits{1.5, 1, 1_000}},
		{"halving stops at the floor", Limits{1.5, 1, 1_000}, Limits{1, 1, 1_000}},
		{"at the floor", Limits{1, 1, 1_000}, Limits{1, 1, 1_000}},
		{"a rate below the floor stays", Limits{0.5, 1, 1_000}, Limits{0.5, 1, 1_000}},
		{"a tiny rate stays", Limits{0.001, 1, 1}, Limits{0.001, 1, 1}},
		{"a burst below the floor stays", Limits{0.5, 0, 1_000}, Limits{0.5, 0, 1_000}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := stepDown(tc.in)
			if got != tc.want {
				t.Errorf("stepDown(%+v) = %+v, want %+v", tc.in, got, tc.want)
			}
			if got.PerSecond > tc.in.PerSecond || got.Burst > tc.in.Burst || unique(got.DailyUnique) > unique(tc.in.DailyUnique) {
				t.Errorf("stepDown(%+v) = %+v raises a limit", tc.in, got)
			}
		})
	}
}

// unique orders new-recipient limits: 0 is unlimited, above any number.
func unique(n int) float64 {
	if n == 0 {
		return float64(1 << 62)
	}
	return float64(n)
}
