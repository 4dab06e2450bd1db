// Package keys is Herald's Redis data model in one place: every key and channel name,
// and how recipients and businesses are named in them.
//
// Invariants:
//   - No key or value holds a plaintext phone number: a recipient is a uid, an HMAC of
//     the E.164 number under the server secret.
//   - Every key of one recipient carries the hash tag {u:<uid>} and every key of one
//     business {b:<id>}, so a script touching one recipient touches one slot and runs
//     unchanged on Redis Cluster. No command spans two recipients, or a recipient and a
//     business.
//
// Recipient keys ({u:<uid>}):
//
//	hr:{u:U}:dev        hash   device id -> device record (algorithm, public key, token hash, created)
//	hr:{u:U}:code       hash   pending verification code: h (sha256), n (failed tries); expires
//	hr:{u:U}:pref:B     hash   the recipient's relation to business B: blk, blk_t, u_t, u_t_at,
//	                           u_m, u_m_at (the recipient's own consent), b_t, b_t_at, b_t_src,
//	                           b_t_ref, b_m, … (what B recorded), last (last admission)
//	hr:{u:U}:biz        set    businesses with a pref hash, for ListPreferences
//	hr:{u:U}:clog       stream every consent change, with who, when and how
//	hr:{u:U}:idem:B:C   string message id admitted for business B's client_message_id C (24 h)
//	hr:{u:U}:msg:M      hash   message M: b, c, k, cm, t, x, bd (body hash or ""), and per device D:
//	                           kid:D (key id it was sealed to), s:D (q queued, d delivered,
//	                           r read, x expired), rp:D (reported)
//	hr:{u:U}:msg:M:D    string device D's envelope of message M, until delivered
//	hr:{u:U}:mb:D       zset   device D's mailbox: queued message ids by admission sequence
//	hr:{u:U}:seq        string admission sequence
//	hr:{u:U}:out        list   status events waiting to be forwarded to business streams
//	hr:{u:U}:seen:B     string when business B last contacted U (message or lookup), for its
//	                           new-recipient limit; expires with the window
//	hr:{u:U}:mk         zset   marketing messages admitted for U in the cap window, by time
//
// Business keys ({b:<id>}):
//
//	hr:{b:B}            hash   display_name, created, mps, burst, uniq (limits)
//	hr:{b:B}:keys       set    ids of the business's active API keys
//	hr:{b:B}:st         stream status events for the business (StreamStatus)
//	hr:{b:B}:new        zset   leased units of its new-recipient allowance, by lease time
//	hr:{b:B}:gcra       hash   its global rate bucket: tokens and when (see package ratelimit)
//	hr:{b:B}:leasers    zset   gateways leasing from that bucket, by last lease
//	hr:{b:B}:q          hash   quality counters: d:<bucket> delivered, r:<bucket> reported,
//	                           stepped (when limits last stepped down)
//
// API keys ({k:<key id>}): hr:{k:K} hash: business, hash (sha256 of the key), created, revoked.
//
// Expiry index ({x:<shard>}): hr:{x:N} zset: admitted message ids by expiry, spread
// over a few shards, for the sweep that reports messages expired on devices that never
// came back.
//
// Sealed bodies ({m:<sha256>}): hr:{m:H} string: a body shared by every message that
// names it (field bd), kept until the last of them expires.
//
// Channels: hr:n:u:U (something was admitted for recipient U), hr:n:b:B (business B has
// new status events).
package keys

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base32"
	"strconv"
	"strings"
)

var b32 = base32.StdEncoding.WithPadding(base32.NoPadding)

// UID is the pseudonymous id of the recipient with the E.164 number e164: the first 26
// characters of the lower-case base32 HMAC-SHA256 of the number under secret (130 bits).
func UID(secret []byte, e164 string) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(e164))
	return strings.ToLower(b32.EncodeToString(m.Sum(nil)))[:26]
}

// Recipient names the keys of one recipient.
type Recipient string

func (u Recipient) prefix() string { return "hr:{u:" + string(u) + "}:" }

// Devices is the recipient's device hash.
func (u Recipient) Devices() string { return u.prefix() + "dev" }

// Code is the recipient's pending verification code.
func (u Recipient) Code() string { return u.prefix() + "code" }

// Pref is the recipient's relation to business b.
func (u Recipient) Pref(b string) string { return u.prefix() + "pref:" + b }

// Businesses is the set of businesses with a Pref hash.
func (u Recipient) Businesses() string { return u.prefix() + "biz" }

// ConsentLog is the stream of consent changes.
func (u Recipient) ConsentLog() string { return u.prefix() + "clog" }

// Idempotency holds the message id admitted for business b's client message id c.
func (u Recipient) Idempotency(b, c string) string { return u.prefix() + "idem:" + b + ":" + c }

// Message is message m's hash.
func (u Recipient) Message(m string) string { return u.prefix() + "msg:" + m }

// MessagePrefix is Message without the message id, for scripts that build Message keys.
func (u Recipient) MessagePrefix() string { return u.prefix() + "msg:" }

// Envelope is device d's envelope of message m, beside the message's hash.
func (u Recipient) Envelope(m, d string) string { return u.Message(m) + ":" + d }

// Mailbox is device d's mailbox.
func (u Recipient) Mailbox(d string) string { return u.prefix() + "mb:" + d }

// Sequence is the recipient's admission counter.
func (u Recipient) Sequence() string { return u.prefix() + "seq" }

// Outbox is the recipient's list of status events not yet forwarded.
func (u Recipient) Outbox() string { return u.prefix() + "out" }

// Seen is when business b last contacted the recipient.
func (u Recipient) Seen(b string) string { return u.prefix() + "seen:" + b }

// MarketingLog holds the recipient's recent marketing admissions.
func (u Recipient) MarketingLog() string { return u.prefix() + "mk" }

// Channel is where admissions for the recipient are announced.
func (u Recipient) Channel() string { return "hr:n:u:" + string(u) }

// Business names the keys of one business.
type Business string

// Record is the business's hash.
func (b Business) Record() string { return "hr:{b:" + string(b) + "}" }

// APIKeys is the set of the business's active key ids.
func (b Business) APIKeys() string { return "hr:{b:" + string(b) + "}:keys" }

// Statuses is the business's status event stream.
func (b Business) Statuses() string { return "hr:{b:" + string(b) + "}:st" }

// NewRecipients is the business's new-recipient allowance.
func (b Business) NewRecipients() string { return "hr:{b:" + string(b) + "}:new" }

// Quality holds the business's delivery and report counters.
func (b Business) Quality() string { return "hr:{b:" + string(b) + "}:q" }

// RateBucket is the business's global rate bucket.
func (b Business) RateBucket() string { return "hr:{b:" + string(b) + "}:gcra" }

// RateLeasers are the gateways leasing from the business's rate bucket.
func (b Business) RateLeasers() string { return "hr:{b:" + string(b) + "}:leasers" }

// Channel is where new status events of the business are announced.
func (b Business) Channel() string { return "hr:n:b:" + string(b) }

// Body is the sealed body with hash h.
func Body(h string) string { return "hr:{m:" + h + "}" }

// ExpiryIndex is shard n of the expiry index.
func ExpiryIndex(n int) string { return "hr:{x:" + strconv.Itoa(n) + "}" }

// APIKey is the record of the API key with id id.
func APIKey(id string) string { return "hr:{k:" + id + "}" }
