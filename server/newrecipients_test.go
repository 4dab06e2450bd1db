package server

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald/blocklist"
	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	"github.com/heraldhq/herald/internal/redistest"
)

// threeGateways starts three gateways on one store sharing clock c, as three replicas
// behind a load balancer would run.
func threeGateways(t *testing.T, c *clock, caps blocklist.Caps) []*gateway {
	t.Helper()
	rs := redistest.Start(t)
	var gs []*gateway
	for range 3 {
		gs = append(gs, startGatewayOn(t, rs, withClock(c), withCaps(caps), func(cfg *Config) { cfg.Replicas = 3 }))
	}
	return gs
}

// The new-recipient allowance is a contract with the business: a new person is
// refused only beyond its tier, however many gateways the sends go through, and the
// retry_after of a refusal is a wait after which a retry succeeds.
func TestNewRecipientsRefusedOnlyBeyondTheTier(t *testing.T) {
	t.Parallel()
	const tier, window = 5, time.Hour
	c := newClock()
	gs := threeGateways(t, c, blocklist.Caps{NewWindow: window})
	people := make([]string, tier+1)
	devs := make([]device, tier+1)
	for i := range people {
		people[i] = fmt.Sprintf("+1415555%04d", 200+i)
		devs[i] = gs[0].register(people[i])
	}
	for round := range 20 {
		biz, key := gs[0].newBusiness(fmt.Sprintf("round %d", round))
		gs[0].setLimits(biz, 1e6, 1e6, tier)
		// Round-robin: person i goes through gateway i mod 3.
		for i := range tier {
			r := gs[i%3].send(key, msg(people[i], tx, rcpt, "first", "x", devs[i]))
			if r.Outcome != heraldv1.Outcome_OUTCOME_ACCEPTED {
				t.Fatalf("round %d: new person %d of %d through gateway %d = %v, want ACCEPTED (under the tier)",
					round, i+1, tier, i%3, r)
			}
		}
		g := gs[tier%3]
		r := g.send(key, msg(people[tier], tx, rcpt, "first", "x", devs[tier]))
		if r.Outcome != heraldv1.Outcome_OUTCOME_NEW_RECIPIENT_LIMITED {
			t.Fatalf("round %d: new person %d = %v, want NEW_RECIPIENT_LIMITED (beyond the tier)", round, tier+1, r)
		}
		wait := r.GetRetryAfter().AsDuration()
		if wait <= 0 || wait > window {
			t.Fatalf("round %d: retry_after %v, want within (0, %v]", round, wait, window)
		}
		// Just before the wait the tier is still full; at the wait a retry passes.
		c.Add(wait - time.Millisecond)
		if r := g.send(key, msg(people[tier], tx, rcpt, "again", "x", devs[tier])); r.Outcome != heraldv1.Outcome_OUTCOME_NEW_RECIPIENT_LIMITED {
			t.Fatalf("round %d: 1 ms before retry_after: %v, want still NEW_RECIPIENT_LIMITED", round, r)
		}
		c.Add(time.Millisecond)
		if r := g.send(key, msg(people[tier], tx, rcpt, "after", "x", devs[tier])); r.Outcome != heraldv1.Outcome_OUTCOME_ACCEPTED {
			t.Fatalf("round %d: at retry_after: %v, want ACCEPTED", round, r)
		}
		c.Add(2 * window) // the next round starts with every allowance free
	}
}

// Many new people at once through three gateways: exactly the tier of them get in.
func TestNewRecipientsExactlyTheTierUnderConcurrency(t *testing.T) {
	t.Parallel()
	const tier, people = 5, 12
	c := newClock()
	gs := threeGateways(t, c, blocklist.Caps{NewWindow: time.Hour})
	biz, key := gs[0].newBusiness("A")
	gs[0].setLimits(biz, 1e6, 1e6, tier)
	devs := make([]device, people)
	for i := range devs {
		devs[i] = gs[0].register(fmt.Sprintf("+1415555%04d", 300+i))
	}
	outcomes := make([]heraldv1.Outcome, people)
	var wg sync.WaitGroup
	for i := range people {
		wg.Go(func() {
			outcomes[i] = gs[i%3].send(key, msg(fmt.Sprintf("+1415555%04d", 300+i), tx, rcpt, "first", "x", devs[i])).Outcome
		})
	}
	wg.Wait()
	accepted := 0
	for i, o := range outcomes {
		switch o {
		case heraldv1.Outcome_OUTCOME_ACCEPTED:
			accepted++
		case heraldv1.Outcome_OUTCOME_NEW_RECIPIENT_LIMITED:
		default:
			t.Fatalf("person %d: %v", i, o)
		}
	}
	if accepted != tier {
		t.Fatalf("%d of %d new people accepted, want exactly the tier, %d", accepted, people, tier)
	}
}
