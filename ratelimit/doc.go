// Package ratelimit holds each business to its limits across every gateway at once,
// without a Redis round trip per message: a sustained rate R (messages per second)
// with bursts of up to B. (The number of people a business may start messaging per
// window is counted by package admission, which runs this Limiter on the Send path.)
//
// # How
//
// The limit's state is one token bucket per business in Redis (hr:{b:<id>}:gcra: the
// tokens it held at a time ts; it refills at R up to B, which is GCRA in other words),
// on the business's slot. Each gateway runs one Limiter, which serves Allow from a local
// stock of tokens it leases from that bucket in chunks, one script call (lease.lua) per
// chunk:
//
//   - A lease aims to last about 100 ms at the rate the business spends on this
//     gateway, and is at most the gateway's capacity
//     L = max(1, ⌊B / (2·N)⌋) minus what it holds already, where N is the larger of
//     WithReplicasHint and the number of gateways that leased for the business within
//     the last lease lifetime (counted in hr:{b:<id>}:leasers). It is also at most the
//     gateway's share, 1/N, of what the bucket still holds (or a quantum, below), so
//     leases shrink as the bucket drains.
//   - When the stock falls below half a lease, the next lease is fetched in the
//     background. Only a caller that finds the stock empty waits for a round trip —
//     the one in flight, or one it starts for exactly what it lacks.
//   - When the bucket is empty, the script answers when it will hold a quantum again
//     (the rate's worth of 5 ms, at least one token, at most L). The gateway remembers
//     that time and refuses, with that RetryAfter, without asking again before it.
//   - Leased tokens stay spendable for a lease lifetime (WithLeaseTTL, default 1 s).
//     A sweep every eighth of a lifetime, or the first caller to need a lease, drops
//     expired ones (so a token is spendable for at most 1⅛ lifetimes: the hot path
//     reads no clock) and gives them back to the bucket with the next script call.
//     Close gives back everything.
//   - A changed limit applies on the call that brings it: the stock is cut to the new
//     capacity at once (and a lease in flight is cut to it when it lands), and the
//     next lease is sized and granted under the new limit.
//
// # The bound
//
// A message is admitted when Allow returns it as allowed (with a nil error). Its
// instant of admission is when its token left the global bucket, if it was leased for
// the waiting call itself, or else when Allow took it from the gateway's stock. (A
// caller learns of a grant made for it one response later, as with any limiter that
// decides in Redis.) A token is held from the instant it leaves the bucket until it is
// admitted or given back to the bucket: the stock, tokens in replies still on the wire,
// and expired tokens not yet given back are held. Let H(t) be what all gateways hold at
// t.
//
// Claim: over any window [a, a+T], the messages admitted within it on all gateways
// together number at most
//
//	R·T + B + H(a)  ≤  R·T + B + N·L
//
// where N is the number of gateways and L = max(1, ⌊B/(2·N₀)⌋), N₀ being the replicas
// hint (1 by default). With N₀ = N and B ≥ 2N the right side is at most R·T + 1.5·B;
// a window that starts with nothing held (after a quiet spell longer than a lease
// lifetime) gets R·T + B, the global bucket's own bound.
//
// Proof. Let G be the tokens that leave the bucket during the window and K those given
// back to it during the window. The bucket holds at most B at a, refills by at most R·T,
// never goes below zero, and gains K, so G ≤ B + R·T + K. Split K into K₀, tokens held
// at a, and K₁, tokens that left during the window. A message admitted in the window
// took a token held at a and not given back, or one that left during the window and
// was not given back: admitted ≤ (H(a) − K₀) + (G − K₁) ≤ H(a) + B + R·T.
//
// Why H(a) ≤ N·L: a gateway asks for stock only with no other lease of the business in
// flight, and the script grants at most its capacity minus what it holds; every
// addition to the stock is followed by cutting it to the capacity, the excess given
// back; the capacity is max(1, ⌊B/(2·N')⌋) with N' never below N₀. ∎
//
// Not covered by N·L, and each adding to the bound:
//
//   - A caller that gives up (its context ends) while the round trip fetching its
//     tokens is in flight, or whose lease fails after it took some tokens from the
//     stock: its tokens return to the stock, over the capacity until the cut that
//     follows, or are given back.
//   - Clock skew. The bucket refills by the clock of the gateway that calls, but its ts
//     never moves back, so gateways whose clocks differ by up to δ add at most R·δ once,
//     not per call.
//   - A limit change within the window: use the larger R and B.
//   - A lost bucket (Redis restarted without persistence, or failed over before the
//     write reached the replica) starts full again: at most B more per loss.
//
// TestLimiterOverAdmissionBound checks the bound with several Limiters on one Redis.
//
// # Failure
//
// When Redis cannot be reached, Allow returns the error and allows nothing, so callers
// fail closed — except that tokens already leased are still spent until they expire:
// at most L per gateway, for at most 1⅛ lease lifetimes. A gateway that dies strands
// what it held (at most L) until the bucket refills.
//
// # Cost
//
// A business spending r messages a second on a gateway costs that gateway about one
// round trip per 100 ms (r/10 messages per round trip once r·100 ms fits under L), so
// at least 1000 messages a second per gateway meet 0.01 round trips per message. A
// business held at its limit costs each gateway about one round trip per 5 ms refill
// quantum (200 a second), however many messages it offers; refused messages cost none.
package ratelimit
