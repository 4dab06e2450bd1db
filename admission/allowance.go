package admission

import (
	"context"
	"crypto/rand"
	_ "embed"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/heraldhq/herald/internal/keys"
	"github.com/heraldhq/herald/internal/rscript"
	"github.com/redis/go-redis/v9"
)

//go:embed allowance.lua
var allowanceSource string

var allowanceScript = rscript.New(allowanceSource)

// allowance is the new-recipient allowance of every business: at most N people newly
// contacted per rolling window, across all gateways. Its state is a sorted set per
// business (keys.Business.NewRecipients) of leased units scored by lease time; a unit
// counts from its lease until its window passes, or until it is handed back unused.
//
// Units are leased on demand, for the admissions that need them, and never stocked
// ahead: a unit held by one gateway for later is a unit another gateway is refused,
// and then a new person would be refused under the tier. The on-demand round trip is
// cheap where it matters, because it happens at most N times per window per business
// (only for people new to it), however many messages the business sends.
type allowance struct {
	rdb     redis.UniversalClient
	metrics allowanceMetrics
}

// units are leased units of one business's allowance, named by their members.
type units []string

// lease asks for n units of business's allowance of limit per window, in one round
// trip. It returns the units granted and, when fewer than n, how long until the oldest
// leased unit leaves the window, after which a retry can be granted one.
func (a allowance) lease(ctx context.Context, business string, limit int, window time.Duration, n int, now time.Time) (units, time.Duration, error) {
	id := leaseID()
	r, err := allowanceScript.Run(ctx, a.rdb, []string{keys.Business(business).NewRecipients()},
		now.UnixMilli(), window.Milliseconds(), limit, n, id).Int64Slice()
	a.metrics.leases.Add(1)
	if err != nil || len(r) != 2 {
		return nil, 0, fmt.Errorf("lease new-recipient allowance: reply %v: %w", r, err)
	}
	a.metrics.granted.Add(float64(r[0]))
	a.metrics.refused.Add(float64(int64(n) - r[0]))
	us := make(units, r[0])
	for i := range us {
		us[i] = keys.AllowanceUnit(id, i+1)
	}
	return us, time.Duration(r[1]) * time.Millisecond, nil
}

// giveBack returns units that were leased but not spent, so that they count no more.
func (a allowance) giveBack(ctx context.Context, business string, us units) error {
	if len(us) == 0 {
		return nil
	}
	members := make([]any, len(us))
	for i, u := range us {
		members[i] = u
	}
	if err := a.rdb.ZRem(ctx, keys.Business(business).NewRecipients(), members...).Err(); err != nil {
		return fmt.Errorf("give back new-recipient allowance: %w", err)
	}
	return nil
}

func leaseID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
