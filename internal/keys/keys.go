// Package keys is Herald's Redis data model in one place: every key and channel name
// here, how recipients and businesses are named in them, and beside it (values.go) the
// format of every value stored under them, each with its one codec, and values.lua,
// the Lua side of the same formats that every script of blocklist and delivery starts
// with.
//
// Invariants:
//   - No key or value holds a plaintext phone number: a recipient is a uid, an HMAC of
//     the E.164 number under the server secret.
//   - Every key of one recipient carries the hash tag {u:<uid>} and every key of one
//     business {b:<id>}, so a script touching one recipient touches one slot and runs
//     unchanged on Redis Cluster. No command spans two recipients, or a recipient and a
//     business.
//
// Encodings: times are Unix milliseconds in decimal (the rate bucket's, microseconds);
// categories are c=t|m (t transactional, m marketing); consents are in|out; a device's
// state in a message is q queued, d delivered, r read, x expired, f failed (refused by
// the device); status events are A accepted, D delivered, R read, X expired, F failed
// (with a reason: bad_signature, unknown_key, cannot_decrypt, header_mismatch,
// replay), and S settled (no stream entry: it takes the message's pending bytes off
// its business's count); a business signing key's origin is f first, e endorsed, r replaced by the
// operator, and its state u in use, s set aside, x retired. Message ids are
// <uid>.<23 base32hex chars> (NewMessageID), so each names its recipient.
//
// Recipient keys ({u:<uid>}):
//
//	hr:{u:U}:dev        hash   device id -> device record alg|public key (base64)|token hash|
//	                           created|key id (DeviceRecord)
//	hr:{u:U}:pend       hash   devices waiting for approval: device id -> device record
//	                           (created is when it registered); never in dev at once
//	hr:{u:U}:ntc        stream notices about the recipient's devices, one field n (Notice);
//	                           capped at NoticeStreamLen
//	hr:{u:U}:ntcur      hash   device id -> id of the last notice it acknowledged
//	hr:{u:U}:klog       list   key log leaf indices (decimal) of the recipient's device key
//	                           events, oldest first (package keylog/store holds the leaves)
//	hr:{u:U}:push       hash   device id -> its push endpoint (PushEndpoint)
//	hr:{u:U}:live:D     string device D has an open Receive stream (the value is the
//	                           stream's own); expires unless renewed; only with push
//	hr:{u:U}:wk:D       string device D was sent a wake-up; expires after the wake interval
//	hr:{u:U}:code       hash   pending verification code: h (sha256), n (failed tries);
//	                           expires (Code)
//	hr:{u:U}:vfy        hash   the number's verification window: f (wrong codes offered),
//	                           i (codes issued), across codes; expires with the window
//	                           (VerifyCounts)
//	hr:{u:U}:pref:B     hash   the recipient's relation to business B (Pref): blk (1|0),
//	                           blk_at; u_c, u_c_at (the recipient's own consent to category c);
//	                           b_c, b_c_at, b_c_src, b_c_ref, b_c_col (what B recorded, with its
//	                           evidence); tat (the pair rate's GCRA); last (last admission)
//	hr:{u:U}:biz        set    businesses with a pref hash, for ListPreferences
//	hr:{u:U}:clog       stream the recipient's own consent changes and blocks, with when
//	                           (ConsentChange); capped, and only the recipient adds to it
//	hr:{u:U}:bclog      stream consents businesses recorded, with their evidence (ConsentChange);
//	                           capped apart from clog. While U has no device, this, biz
//	                           and the pref hashes a business call created expire
//	                           (blocklist.UnregisteredRecordTTL) unless U registers
//	hr:{u:U}:idem:B:C   string message id admitted for business B's client_message_id C (24 h)
//	hr:{u:U}:msg:M      hash   message M (Message): b, c, k, cm, t (sent), x (expires), bd (body
//	                           hash or ""), sk (the business key id it was signed with, if
//	                           given), pb (the bytes it counts against its business's
//	                           pending bytes, if counted), and per device D: s:D (state), kid:D (key id it was
//	                           sealed to), rp:D (why D reported it). Once no device has
//	                           it queued it settles (values.lua): cut to b, cm, s:D, rp:D
//	                           for the receipt window if some device received it,
//	                           deleted if none did
//	hr:{u:U}:msg:M:D    string device D's envelope of message M, until delivered
//	hr:{u:U}:mb:D       zset   device D's mailbox: queued message ids by admission sequence
//	hr:{u:U}:seq        string admission sequence
//	hr:{u:U}:out        list   status events waiting to be forwarded to business streams:
//	                           status|business|message id|client message id|device id|
//	                           time[|reason[|pending bytes]] (Event)
//	hr:{u:U}:seen:B     string when business B last contacted U (message or lookup), for its
//	                           new-recipient limit; expires with the window
//	hr:{u:U}:mk         zset   marketing message ids admitted for U in the cap window, by time
//
// Business keys ({b:<id>}):
//
//	hr:{b:B}            hash   display_name, created, mps, burst, uniq (limits), sigkey (the
//	                           id of its current signing key), sigkey:<key id> (each
//	                           Ed25519 key with how it came: first, endorsed by key id
//	                           with the signature, or replaced by the operator; and its
//	                           state: in use, set aside by a replacement, retired but on a
//	                           later key's chain), pend (the bytes its messages in
//	                           flight hold, counted by the forwarder) (BusinessRecord,
//	                           SigningKeyRecord)
//	hr:{b:B}:keys       set    ids of the business's active API keys
//	hr:{b:B}:klog       hash   signing key id -> index (decimal) of the key log leaf that
//	                           published it
//	hr:{b:B}:wh         hash   the business's webhook (WebhookRecord): url, secrets, the
//	                           stream cursor delivered up to, failures
//	hr:{b:B}:whl        string the gateway delivering the webhook now; expires
//	hr:{b:B}:st         stream status events for the business (StreamStatus): s, m, cm, d, t
//	hr:{b:B}:new        zset   units of its new-recipient allowance (AllowanceUnit), by lease time
//	hr:{b:B}:gcra       hash   its global rate bucket: tokens and ts (see package ratelimit)
//	hr:{b:B}:leasers    zset   gateways leasing from that bucket, by last lease
//	hr:{b:B}:lk:gcra    hash   its bucket for the calls that ask about a number
//	                           (LookupRecipient, RecordConsent), as gcra
//	hr:{b:B}:lk:leasers zset   gateways leasing from that bucket, as leasers
//	hr:{b:B}:fw:E       string mark that event E (EventID) was copied to the stream; expires
//	                           after the forwarder's dedupe window
//	hr:{b:B}:q          hash   quality counters (QualityCounters): d:<bucket> delivered,
//	                           r:<bucket> reported, stepped (when limits last stepped
//	                           down; business/stepdown.lua decides and steps in one go)
//
// API keys ({k:<key id>}): hr:{k:K} hash: business, hash (sha256 of the key), created,
// revoked (APIKeyRecord).
//
// Outbox index ({o:<shard>}): hr:{o:N} zset: recipients whose outbox may hold status
// events, by when one may have been added (OutboxIndex); a forwarder that drained an
// outbox removes its recipient unless a newer entry came meanwhile.
//
// Webhooks ({wh}): hr:{wh} set: businesses with a webhook.
//
// Expiry index ({x:<shard>}): hr:{x:N} zset: ids of messages in flight by expiry,
// spread over a few shards, for the sweep that reports messages expired on devices
// that never came back; a message leaves it when it settles or expires.
//
// Sealed bodies ({m:<sha256>}): hr:{m:H} string: a body shared by every message that
// names it (field bd), kept until the last of them expires.
//
// Key log ({kl}): the one append-only Merkle log of device and business key events
// (package keylog/store), all on one slot so that one script appends and the tree
// never forks:
//
//	hr:{kl}:leaves      list   the leaves (keylog.Encode), leaf i at list index i
//	hr:{kl}:size        string the tree size: how many leaves have every node of their
//	                           tree stored (decimal); only grows
//	hr:{kl}:n:L:B       string block B of level L of the tree (level 0: leaf hashes):
//	                           node i of the level is in block i / KeyLogBlock, its 32
//	                           bytes at offset 32·(i mod KeyLogBlock) (KeyLogNode)
//
// Channels: hr:n:u:U (something was admitted for recipient U), hr:n:b:B (business B has
// new status events).
//
// # Keys that scripts build
//
// Redis Cluster routes a script by the keys it declares, and a script may touch only
// keys of their slot. A few scripts build key names inside Lua rather than declaring
// each one, because how many they touch depends on what they read:
//
//   - fetch.lua, ack.lua, reject.lua and undeliverable.lua build message keys
//     (hr:{u:U}:msg:M) and envelope keys (…:msg:M:D) from the recipient's
//     MessagePrefix and the ids they read from a mailbox or are given;
//   - expire.lua builds mailbox keys (hr:{u:U}:mb:D) from the recipient's mailbox prefix
//     and the devices it finds in a message hash;
//   - wake.lua builds each device's live and woken marks from the recipient's Live("")
//     and Woken("") prefixes and the device ids it is given;
//   - forward.lua builds each event's dedupe mark from the business's ForwardedPrefix
//     (hr:{b:B}:fw:), on the slot of the business's stream it declares;
//   - admit.lua builds each envelope key from the message key and a device id, and for
//     a duplicate the first message's key from the message key's prefix;
//   - keylog/store's scripts build the key log's node blocks (hr:{kl}:n:L:B) from
//     KeyLogNodePrefix, on the slot of the leaves and size they declare.
//
// Each built name starts with a declared key, or with a prefix (MessagePrefix,
// Mailbox(""), KeyLogNodePrefix) that the caller made from the same hash tag as the
// declared keys: hr:{u:U}:, hr:{b:B}:, hr:{kl}:. Redis Cluster hashes only the first
// {…} of a name, so what a script appends cannot change it: a built name has the same
// hash tag as the declared keys, hashes to their slot, and lives on the node that runs
// the script.
package keys

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base32"
	"hash/fnv"
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

// PendingDevices is the recipient's hash of devices waiting for approval.
func (u Recipient) PendingDevices() string { return u.prefix() + "pend" }

// Notices is the recipient's stream of device notices.
func (u Recipient) Notices() string { return u.prefix() + "ntc" }

// NoticeCursors holds, per device, the last notice it acknowledged.
func (u Recipient) NoticeCursors() string { return u.prefix() + "ntcur" }

// KeyLogEvents is the list of the key log's leaf indices of the recipient's device key
// events, oldest first.
func (u Recipient) KeyLogEvents() string { return u.prefix() + "klog" }

// PushEndpoints maps the recipient's devices to their push endpoints (PushEndpoint).
func (u Recipient) PushEndpoints() string { return u.prefix() + "push" }

// Live marks that device d has an open Receive stream; it expires unless renewed.
func (u Recipient) Live(d string) string { return u.prefix() + "live:" + d }

// Woken marks that device d was sent a wake-up lately; it expires after the wake
// interval.
func (u Recipient) Woken(d string) string { return u.prefix() + "wk:" + d }

// Code is the recipient's pending verification code.
func (u Recipient) Code() string { return u.prefix() + "code" }

// VerifyCounts are the recipient's verification counts for the current window.
func (u Recipient) VerifyCounts() string { return u.prefix() + "vfy" }

// Pref is the recipient's relation to business b.
func (u Recipient) Pref(b string) string { return u.prefix() + "pref:" + b }

// Businesses is the set of businesses with a Pref hash.
func (u Recipient) Businesses() string { return u.prefix() + "biz" }

// ConsentLog is the stream of the recipient's own consent changes.
func (u Recipient) ConsentLog() string { return u.prefix() + "clog" }

// BusinessConsentLog is the stream of consents businesses recorded for the recipient.
func (u Recipient) BusinessConsentLog() string { return u.prefix() + "bclog" }

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

// KeyLogIndex maps the business's signing key ids to the key log leaf that published
// each.
func (b Business) KeyLogIndex() string { return "hr:{b:" + string(b) + "}:klog" }

// Webhook is the business's webhook: where its status events are POSTed, the secrets
// they are signed with, and how far delivery got (WebhookRecord).
func (b Business) Webhook() string { return "hr:{b:" + string(b) + "}:wh" }

// WebhookLease names the gateway that delivers the business's webhook now.
func (b Business) WebhookLease() string { return "hr:{b:" + string(b) + "}:whl" }

// Webhooks is the set of businesses that have a webhook, which every gateway looks
// through for webhooks to deliver.
func Webhooks() string { return "hr:{wh}" }

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

// LookupRateBucket is the business's global bucket for the calls that ask about a
// number (LookupRecipient, RecordConsent), which have a rate of their own.
func (b Business) LookupRateBucket() string { return "hr:{b:" + string(b) + "}:lk:gcra" }

// LookupRateLeasers are the gateways leasing from the business's lookup bucket.
func (b Business) LookupRateLeasers() string { return "hr:{b:" + string(b) + "}:lk:leasers" }

// ForwardedPrefix starts the names of the marks of status events already copied to
// the business's stream (ForwardedPrefix + EventID), kept for the dedupe window, so
// that an event copied twice reaches the business once. delivery/forward.lua builds
// them, on the business's slot.
func (b Business) ForwardedPrefix() string { return "hr:{b:" + string(b) + "}:fw:" }

// Channel is where new status events of the business are announced.
func (b Business) Channel() string { return "hr:n:b:" + string(b) }

// Body is the sealed body with hash h.
func Body(h string) string { return "hr:{m:" + h + "}" }

// OutboxShards is how many sorted sets the outbox index is spread over, so that no one
// Redis Cluster slot takes every write of it.
const OutboxShards = 16

// OutboxIndex is the shard of the outbox index that holds recipient uid: the
// recipients whose outbox may hold status events, by when one may have been added.
// A gateway adds the recipient in the same pipeline as the script that adds events,
// ahead of it, so that events a gateway that died before forwarding them left behind
// are found and forwarded by any other.
func OutboxIndex(uid string) string { return OutboxIndexShard(int(fnv32(uid) % OutboxShards)) }

// OutboxIndexShard is shard n of the outbox index.
func OutboxIndexShard(n int) string { return "hr:{o:" + strconv.Itoa(n) + "}" }

func fnv32(s string) uint32 {
	h := fnv.New32a()
	h.Write([]byte(s))
	return h.Sum32()
}

// ExpiryIndex is shard n of the expiry index.
func ExpiryIndex(n int) string { return "hr:{x:" + strconv.Itoa(n) + "}" }

// APIKey is the record of the API key with id id.
func APIKey(id string) string { return "hr:{k:" + id + "}" }

// KeyLogLeaves is the key log's list of leaves.
func KeyLogLeaves() string { return "hr:{kl}:leaves" }

// KeyLogSize is the key log's tree size.
func KeyLogSize() string { return "hr:{kl}:size" }

// KeyLogBlock is how many node hashes one block of a level of the key log's tree
// holds: 2 MiB of hashes, far below Redis's 512 MiB limit on a string.
const KeyLogBlock = 1 << 16

// KeyLogNode is where node index of level of the key log's tree is stored: the key of
// its block and the offset of its 32 bytes in it.
func KeyLogNode(level uint, index uint64) (key string, offset int64) {
	return KeyLogNodePrefix() + strconv.FormatUint(uint64(level), 10) + ":" +
		strconv.FormatUint(index/KeyLogBlock, 10), int64(index%KeyLogBlock) * 32
}

// KeyLogNodePrefix starts the names of the key log's node blocks, for the scripts that
// build them: prefix, level, ":", block.
func KeyLogNodePrefix() string { return "hr:{kl}:n:" }
