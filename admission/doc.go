// Package admission is the Send path of a gateway in one place: everything between a
// business's validated messages and their decisions. The gRPC layer translates protos
// to Messages and Decisions back; every step of the protocol is here.
//
// One call of Admit, for a batch of one business's messages:
//
//  1. The business's limits, from the business store's cache (no round trip in steady
//     state).
//  2. Its rate (package ratelimit): a prefix of the batch, in order, is allowed from
//     tokens this gateway leased; the rest are RateLimited with the wait. No round
//     trip in steady state.
//  3. One admission script per recipient (package blocklist, admit.lua), pipelined:
//     one round trip for the whole batch. A business with a new-recipient allowance
//     asks first without spending any: a person it has contacted within the window is
//     decided at once; a person new to it is answered NewRecipientLimited before the
//     script reveals anything about them.
//  4. Only if some people were new: one lease of that many units of the business's
//     allowance, and one more pipelined admission of theirs with a unit each. Units a
//     second attempt did not spend go back.
//
// # The new-recipient allowance
//
// A business may start at most N people per rolling window (business.Limits
// DailyUnique), across all gateways. Each start spends one unit, a member of the
// business's sorted set in Redis scored by its lease time, counted until its window
// passes. Units are leased for the admissions that need them, never stocked ahead, which
// gives the contract the business is promised:
//
//   - A new person is refused only beyond the tier: a refusal means N units are counted
//     in the window, and each was spent on a start or is held, for the length of one
//     admission, by a call in flight. No gateway holds units for later, so none can be
//     refused because another gateway sits on them.
//   - Never more than N starts per window: a start needs a unit, and the lease script
//     grants one only while fewer than N are counted. A unit whose second admission
//     failed in Redis stays counted (it may have been spent), erring towards refusing.
//   - The RetryAfter of a refusal is when the oldest counted unit leaves the window: a
//     retry then is granted a unit unless another start takes it first.
//
// Leasing on demand costs two more round trips per new person (fewer per person in a
// batch: one lease and one pipeline for all of them). That happens at most N times per
// window per business, however many messages it sends, which is why stocking units
// ahead (and breaking the first promise) would save nothing worth having.
//
// Lookup (LookupRecipient) follows the same protocol with the check-only script, since
// a lookup tells whether a number is registered and so spends allowance like a message.
package admission
