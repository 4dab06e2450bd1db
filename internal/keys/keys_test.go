package keys_test

import (
	"strings"
	"testing"

	"github.com/heraldhq/herald/internal/keys"
)

// TestKeyLogNode: node hashes fill each block end to end and go on in the next one,
// and every key of the key log is on the {kl} slot.
func TestKeyLogNode(t *testing.T) {
	t.Parallel()
	cases := []struct {
		level uint
		index uint64
		key   string
		off   int64
	}{
		{0, 0, "hr:{kl}:n:0:0", 0},
		{0, 1, "hr:{kl}:n:0:0", 32},
		{0, keys.KeyLogBlock - 1, "hr:{kl}:n:0:0", 32 * (keys.KeyLogBlock - 1)},
		{0, keys.KeyLogBlock, "hr:{kl}:n:0:1", 0},
		{17, 3*keys.KeyLogBlock + 5, "hr:{kl}:n:17:3", 160},
	}
	for _, c := range cases {
		key, off := keys.KeyLogNode(c.level, c.index)
		if key != c.key || off != c.off {
			t.Errorf("KeyLogNode(%d, %d) = %s, %d; want %s, %d", c.level, c.index, key, off, c.key, c.off)
		}
		if !strings.HasPrefix(key, keys.KeyLogNodePrefix()) {
			t.Errorf("%s does not start with KeyLogNodePrefix", key)
		}
	}
	for _, k := range []string{keys.KeyLogLeaves(), keys.KeyLogSize(), keys.KeyLogNodePrefix()} {
		if !strings.HasPrefix(k, "hr:{kl}:") {
			t.Errorf("%s is not on the key log's slot", k)
		}
	}
}
