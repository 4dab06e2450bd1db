package store

import (
	"context"

	"github.com/heraldhq/herald/internal/keys"
	"github.com/heraldhq/herald/keylog"
)

// AppendWithoutIntegrating does the first half of Append only, as a gateway that
// dies between its two steps: the leaf is pushed and its hash stored, and no inner
// node is.
func (l *Log) AppendWithoutIntegrating(ctx context.Context, e keylog.Event) (uint64, error) {
	leaf, err := keylog.Encode(e)
	if err != nil {
		return 0, err
	}
	vals, err := appendScript.Run(ctx, l.rdb, l.keys(),
		keys.KeyLogNodePrefix(), keys.KeyLogBlock, maxPending, leaf, keylog.LeafHash(leaf)).Slice()
	if err != nil {
		return 0, err
	}
	return uint64(vals[0].(int64)), nil
}
