package keys

// The values stored under the keys of keys.go, each with its one Go codec: what writes
// a value and what reads it meet here, so a format is changed in one place. Scripts use
// the Lua side of the same formats, values.lua, which the function Lua puts in front of
// them; the package's tests run every script and parse what it wrote with these
// codecs.
//
// Field values never contain "|", the separator of lines: ids are drawn from
// [a-z0-9_], client message ids from [A-Za-z0-9._:-], public keys are base64, hashes
// hex.

import (
	"crypto/rand"
	"crypto/sha256"
	_ "embed"
	"encoding/base32"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
)

// ErrMalformed is wrapped by every parse error: the stored value is not in the format
// its key holds (written by a different version, or tampered with).
var ErrMalformed = errors.New("malformed stored value")

func malformed(what, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrMalformed, what, fmt.Sprintf(format, args...))
}

// millis formats t as Unix milliseconds, the stored form of every time.
func millis(t time.Time) string { return strconv.FormatInt(t.UnixMilli(), 10) }

// parseMillis reads Unix milliseconds.
func parseMillis(what, s string) (time.Time, error) {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return time.Time{}, malformed(what, "not a time in milliseconds: %q", s)
	}
	return time.UnixMilli(n), nil
}

// optMillis reads Unix milliseconds, or the zero time from "".
func optMillis(what, s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	return parseMillis(what, s)
}

// ParseTime reads a stored time (Unix milliseconds, as every time here but the rate
// bucket's); "" is the zero time. For a single field a script returns, such as the
// expiry admit.lua answers a duplicate with (MessageExpires).
func ParseTime(s string) (time.Time, error) { return optMillis("time", s) }

// optField appends field and v to kv unless v is "".
func optField(kv []any, field, v string) []any {
	if v == "" {
		return kv
	}
	return append(kv, field, v)
}

// --- Message ids -------------------------------------------------------------------

// messageIDTail is the length of a message id after its uid and ".": 14 bytes in
// unpadded base32.
const messageIDTail = 23

// b32hex encodes a message id's tail: base32 with the "extended hex" alphabet
// (RFC 4648 §7) keeps the bytes' order in the strings' order, which the standard
// alphabet, whose digits come after its letters, does not.
var b32hex = base32.HexEncoding.WithPadding(base32.NoPadding)

// NewMessageID makes the id of a message to recipient uid admitted at now: the uid (so
// an ack, a sweep or a report names whose keys hold the message), ".", then 14 bytes in
// lower-case base32hex: the admission time in milliseconds (48 bits, so ids of one
// recipient sort by admission time, to the millisecond) and 64 random bits.
func NewMessageID(uid string, now time.Time) string {
	var b [14]byte
	binary.BigEndian.PutUint64(b[:8], uint64(now.UnixMilli())<<16)
	rand.Read(b[6:])
	return uid + "." + strings.ToLower(b32hex.EncodeToString(b[:]))
}

// MessageUID is the recipient uid inside a message id; ok is false when id is not
// shaped like one. The tail may be in either base32 alphabet: ids made before they
// were base32hex stay valid.
func MessageUID(id string) (uid string, ok bool) {
	uid, tail, found := strings.Cut(id, ".")
	if !found || len(uid) != 26 || len(tail) != messageIDTail || !isBase32(uid) || !isLowerAlnum(tail) {
		return "", false
	}
	return uid, true
}

// isLowerAlnum reports whether s is lower-case letters and digits only.
func isLowerAlnum(s string) bool {
	for i := range len(s) {
		if c := s[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

func isBase32(s string) bool {
	for i := range len(s) {
		if c := s[i]; !(c >= 'a' && c <= 'z' || c >= '2' && c <= '7') {
			return false
		}
	}
	return true
}

// --- Status events (hr:{u:U}:out, hr:{b:B}:st) --------------------------------------

// Status letters of events, as outboxes and status streams hold them.
const (
	StatusAccepted  = "A"
	StatusDelivered = "D"
	StatusRead      = "R"
	StatusExpired   = "X"
	StatusFailed    = "F"
	// StatusSettled marks a message that left flight (no device has it queued): its
	// pending bytes no longer count against its business's quota. Only outboxes hold
	// it; the forwarder applies it to the business's count and copies it to no stream.
	StatusSettled = "S"
)

// Reasons a device refuses a delivery, as StatusFailed events carry them.
const (
	RejectBadSignature   = "bad_signature"
	RejectUnknownKey     = "unknown_key"
	RejectCannotDecrypt  = "cannot_decrypt"
	RejectHeaderMismatch = "header_mismatch"
	RejectReplay         = "replay"
)

// rejectReasons are the reasons, for checking.
var rejectReasons = []string{RejectBadSignature, RejectUnknownKey, RejectCannotDecrypt, RejectHeaderMismatch, RejectReplay}

// Event is a status event. A script appends it to the recipient's outbox in the same
// step as the change it reports, as the line
//
//	status|business|message id|client message id|device id|time (ms)[|reason[|bytes]]
//
// (device id "" for StatusAccepted and StatusSettled; the reason, Reject*, only on
// StatusFailed; bytes, the change to the business's pending bytes, only on
// StatusAccepted, positive, and StatusSettled, negative); the forwarder copies it to the
// business's status stream as the entry {s: status, m: message id, cm: client message
// id, d: device id, t: time (ms)[, r: reason]}, all but StatusSettled, and adds bytes
// to the business's pending bytes (BusinessPending).
type Event struct {
	Status          string
	Business        string
	MessageID       string
	ClientMessageID string
	DeviceID        string
	Time            time.Time
	// Reason is why the device refused the delivery (StatusFailed only).
	Reason string
	// Bytes is what the event adds to its business's pending bytes: the message's
	// size on StatusAccepted, minus it on StatusSettled, 0 on the others (and on
	// events of messages admitted before pending bytes were counted).
	Bytes int64
}

// Encode is the event's outbox line.
func (e Event) Encode() string {
	f := []string{e.Status, e.Business, e.MessageID, e.ClientMessageID, e.DeviceID, millis(e.Time)}
	switch {
	case e.Bytes != 0:
		f = append(f, e.Reason, strconv.FormatInt(e.Bytes, 10))
	case e.Reason != "":
		f = append(f, e.Reason)
	}
	return strings.Join(f, "|")
}

// ParseEvent reads an outbox line.
func ParseEvent(line string) (Event, error) {
	f := strings.Split(line, "|")
	if len(f) < 6 || len(f) > 8 {
		return Event{}, malformed("outbox event", "%d fields, want 6 to 8", len(f))
	}
	t, err := parseMillis("outbox event", f[5])
	if err != nil {
		return Event{}, err
	}
	e := Event{Status: f[0], Business: f[1], MessageID: f[2], ClientMessageID: f[3], DeviceID: f[4], Time: t}
	if len(f) >= 7 {
		e.Reason = f[6]
	}
	if len(f) == 8 {
		if e.Bytes, err = strconv.ParseInt(f[7], 10, 64); err != nil || e.Bytes == 0 {
			return Event{}, malformed("outbox event", "bytes %q", f[7])
		}
	}
	if e.Status == StatusSettled {
		return e, e.checkSettled()
	}
	return e, e.check("outbox event")
}

// checkSettled checks a StatusSettled event.
func (e Event) checkSettled() error {
	switch {
	case e.Business == "" || e.MessageID == "":
		return malformed("outbox event", "no business or message id")
	case e.DeviceID != "" || e.Reason != "" || e.Bytes >= 0:
		return malformed("outbox event", "settled with device %q, reason %q, bytes %d", e.DeviceID, e.Reason, e.Bytes)
	}
	return nil
}

// EventID names an event by its outbox line, for the mark that it was copied to its
// business's stream (Business.ForwardedPrefix): 16 hex characters of its SHA-256. Two
// events never share a line (each state change of a message on a device happens
// once), and a line copied again has the same id.
func EventID(line string) string {
	h := sha256.Sum256([]byte(line))
	return hex.EncodeToString(h[:8])
}

// StreamValues are the event's fields in its business's status stream (XADD).
func (e Event) StreamValues() []any {
	v := []any{"s", e.Status, "m", e.MessageID, "cm", e.ClientMessageID, "d", e.DeviceID, "t", millis(e.Time)}
	if e.Reason != "" {
		v = append(v, "r", e.Reason)
	}
	return v
}

// ParseStreamEvent reads an entry of business's status stream.
func ParseStreamEvent(business string, values map[string]any) (Event, error) {
	s := func(f string) string { v, _ := values[f].(string); return v }
	t, err := parseMillis("status stream entry", s("t"))
	if err != nil {
		return Event{}, err
	}
	e := Event{Status: s("s"), Business: business, MessageID: s("m"), ClientMessageID: s("cm"), DeviceID: s("d"),
		Time: t, Reason: s("r")}
	return e, e.check("status stream entry")
}

func (e Event) check(what string) error {
	switch {
	case !slices.Contains([]string{StatusAccepted, StatusDelivered, StatusRead, StatusExpired, StatusFailed}, e.Status):
		return malformed(what, "unknown status %q", e.Status)
	case e.Business == "" || e.MessageID == "":
		return malformed(what, "no business or message id")
	case (e.Status == StatusAccepted) != (e.DeviceID == ""):
		return malformed(what, "status %s with device %q", e.Status, e.DeviceID)
	case (e.Status == StatusFailed) != (e.Reason != ""):
		return malformed(what, "status %s with reason %q", e.Status, e.Reason)
	case e.Reason != "" && !slices.Contains(rejectReasons, e.Reason):
		return malformed(what, "unknown reason %q", e.Reason)
	case e.Bytes < 0 || e.Bytes > 0 && e.Status != StatusAccepted:
		return malformed(what, "status %s with bytes %d", e.Status, e.Bytes)
	}
	return nil
}

// --- Device notices (hr:{u:U}:ntc) -------------------------------------------------

// Device notice events, as Notice.Event holds them.
const (
	NoticePending    = "p"
	NoticeApproved   = "a"
	NoticeActivated  = "v"
	NoticeRemoved    = "r"
	NoticeKeyRotated = "k"
)

// NoticeField is the one field of a notice stream entry.
const NoticeField = "n"

// NoticeStreamLen caps a recipient's notice stream (approximately): a device away for
// longer than that many device changes misses the oldest, and lists the devices
// instead.
const NoticeStreamLen = 100

// Notice is a notice about one of a recipient's devices, stored as the line
//
//	event|device id|algorithm|public key (standard base64)|key id|time (ms)|activate (ms or "")|by device id
//
// The key fields are empty for NoticeRemoved; activate is set for NoticePending only.
type Notice struct {
	Event     string
	DeviceID  string
	Algorithm int
	PublicKey []byte
	KeyID     string
	Time      time.Time
	Activate  time.Time
	By        string
}

// Encode is the notice's stored line.
func (n Notice) Encode() string {
	alg, act := "", ""
	if n.Algorithm != 0 {
		alg = strconv.Itoa(n.Algorithm)
	}
	if !n.Activate.IsZero() {
		act = millis(n.Activate)
	}
	return strings.Join([]string{n.Event, n.DeviceID, alg, base64.StdEncoding.EncodeToString(n.PublicKey), n.KeyID,
		millis(n.Time), act, n.By}, "|")
}

// ParseNotice reads a stored notice line.
func ParseNotice(line string) (Notice, error) {
	f := strings.Split(line, "|")
	if len(f) != 8 {
		return Notice{}, malformed("notice", "%d fields, want 8", len(f))
	}
	n := Notice{Event: f[0], DeviceID: f[1], KeyID: f[4], By: f[7]}
	switch n.Event {
	case NoticePending, NoticeApproved, NoticeActivated, NoticeKeyRotated:
		if f[2] == "" || f[3] == "" || f[4] == "" {
			return Notice{}, malformed("notice", "event %s without a key", n.Event)
		}
	case NoticeRemoved:
	default:
		return Notice{}, malformed("notice", "event %q", n.Event)
	}
	if n.DeviceID == "" {
		return Notice{}, malformed("notice", "no device")
	}
	var err error
	if f[2] != "" {
		if n.Algorithm, err = strconv.Atoi(f[2]); err != nil {
			return Notice{}, malformed("notice", "algorithm %q", f[2])
		}
	}
	if n.PublicKey, err = base64.StdEncoding.DecodeString(f[3]); err != nil {
		return Notice{}, malformed("notice", "public key: %v", err)
	}
	if n.Time, err = parseMillis("notice", f[5]); err != nil {
		return Notice{}, err
	}
	if (n.Event == NoticePending) != (f[6] != "") {
		return Notice{}, malformed("notice", "event %s with activate time %q", n.Event, f[6])
	}
	if f[6] != "" {
		if n.Activate, err = parseMillis("notice activate time", f[6]); err != nil {
			return Notice{}, err
		}
	}
	return n, nil
}

// --- Device records (hr:{u:U}:dev) -------------------------------------------------

// DeviceRecord is a device's value in its recipient's device hash, the line
//
//	algorithm|public key (standard base64)|token hash (hex sha256)|created (ms)|key id
type DeviceRecord struct {
	Algorithm int
	PublicKey []byte
	// TokenHash is the SHA-256 of the device's bearer token; the token is never stored.
	TokenHash string
	Created   time.Time
	// KeyID names PublicKey (e2e.KeyID); envelopes say which key they were sealed to.
	KeyID string
}

// Encode is the record's stored line.
func (r DeviceRecord) Encode() string {
	return strings.Join([]string{strconv.Itoa(r.Algorithm), base64.StdEncoding.EncodeToString(r.PublicKey), r.TokenHash,
		millis(r.Created), r.KeyID}, "|")
}

// ParseDeviceRecord reads a stored device line.
func ParseDeviceRecord(line string) (DeviceRecord, error) {
	f := strings.Split(line, "|")
	if len(f) != 5 {
		return DeviceRecord{}, malformed("device record", "%d fields, want 5", len(f))
	}
	alg, err := strconv.Atoi(f[0])
	if err != nil {
		return DeviceRecord{}, malformed("device record", "algorithm %q", f[0])
	}
	pub, err := base64.StdEncoding.DecodeString(f[1])
	if err != nil {
		return DeviceRecord{}, malformed("device record", "public key: %v", err)
	}
	created, err := parseMillis("device record", f[3])
	if err != nil {
		return DeviceRecord{}, err
	}
	return DeviceRecord{Algorithm: alg, PublicKey: pub, TokenHash: f[2], Created: created, KeyID: f[4]}, nil
}

// --- Messages (hr:{u:U}:msg:M) ------------------------------------------------------

// Fields of a message hash: what admit.lua writes once for the message.
const (
	MessageBusiness = "b"
	MessageCategory = "c"
	MessageKind     = "k"
	MessageClientID = "cm"
	MessageSent     = "t"
	MessageExpires  = "x"
	// MessageBody is the hash of the sealed body (hr:{m:H}) the envelopes unlock, or ""
	// when each envelope is the whole message.
	MessageBody = "bd"
	// MessageSigningKey is the id (e2e.KeyID) of the business key the message was
	// signed with, when the business said: its deliveries carry that key.
	MessageSigningKey = "sk"
	// MessagePendingBytes is what the message counts against its business's pending
	// bytes while in flight (envelopes, the body when the message brought it, and a
	// fixed share for the rest); absent on messages admitted before it was counted.
	MessagePendingBytes = "pb"
)

// MessageState is the field of device d's state (StateQueued …) in a message hash.
func MessageState(d string) string { return "s:" + d }

// MessageKeyID is the field of the device key that d's envelope was sealed to, when the
// business said.
func MessageKeyID(d string) string { return "kid:" + d }

// MessageReport is the field of the reason device d reported the message for, once it
// did.
func MessageReport(d string) string { return "rp:" + d }

// A message's states on one device. Each moves once, forward only: q -> d -> r, or
// q -> x (expired), or q -> f (the device refused it); the change and the status
// event that reports it are one script.
const (
	StateQueued    = "q"
	StateDelivered = "d"
	StateRead      = "r"
	StateExpired   = "x"
	StateFailed    = "f"
)

// Message categories, as message hashes and pref fields name them.
const (
	CategoryTransactional = "t"
	CategoryMarketing     = "m"
)

// Message is a message's hash. In flight (some device has it queued) it holds every
// field; once settled (no device has it queued, values.lua's settle) it is cut to what
// a late read receipt or report needs: the business, the client message id, and each
// device's state and report, and it lives for the receipt window at most. A message
// that no device received is deleted when it settles.
type Message struct {
	// Settled is true for a settled record: only Business, ClientMessageID and the
	// devices' State and Report are set.
	Settled         bool
	Business        string
	Category        string
	Kind            string
	ClientMessageID string
	Sent            time.Time
	Expires         time.Time
	// BodyHash names the sealed body (see MessageBody); "" for none.
	BodyHash string
	// SigningKeyID is the business key it was signed with (MessageSigningKey); "" when
	// the business did not say.
	SigningKeyID string
	// PendingBytes is what it counts against its business's pending bytes
	// (MessagePendingBytes); 0 when not counted.
	PendingBytes int64
	// Devices are the message's recipients' devices, by id.
	Devices map[string]MessageDevice
}

// MessageDevice is a message on one device.
type MessageDevice struct {
	State string
	// KeyID is the device key its envelope was sealed to; "" when the business did
	// not say.
	KeyID string
	// Report is why the device reported the message; "" until it does.
	Report string
}

// Fields are the message's hash fields and values, for HSET.
func (m Message) Fields() []any {
	kv := []any{MessageBusiness, m.Business, MessageClientID, m.ClientMessageID}
	if !m.Settled {
		kv = append(kv, MessageCategory, m.Category, MessageKind, m.Kind, MessageSent, millis(m.Sent),
			MessageExpires, millis(m.Expires), MessageBody, m.BodyHash)
		kv = optField(kv, MessageSigningKey, m.SigningKeyID)
		if m.PendingBytes > 0 {
			kv = append(kv, MessagePendingBytes, strconv.FormatInt(m.PendingBytes, 10))
		}
	}
	for _, d := range slices.Sorted(maps.Keys(m.Devices)) {
		md := m.Devices[d]
		kv = append(kv, MessageState(d), md.State)
		if !m.Settled {
			kv = optField(kv, MessageKeyID(d), md.KeyID)
		}
		kv = optField(kv, MessageReport(d), md.Report)
	}
	return kv
}

// ParseMessage reads a message hash (HGETALL).
func ParseMessage(h map[string]string) (Message, error) {
	m := Message{Business: h[MessageBusiness], Category: h[MessageCategory], Kind: h[MessageKind],
		ClientMessageID: h[MessageClientID], BodyHash: h[MessageBody], SigningKeyID: h[MessageSigningKey],
		Devices: map[string]MessageDevice{}}
	for f, v := range h {
		kind, d, perDevice := strings.Cut(f, ":")
		if !perDevice {
			switch f {
			case MessageBusiness, MessageCategory, MessageKind, MessageClientID, MessageSent, MessageExpires, MessageBody,
				MessageSigningKey:
				continue
			case MessagePendingBytes:
				n, err := strconv.ParseInt(v, 10, 64)
				if err != nil || n <= 0 {
					return Message{}, malformed("message", "%s = %q", f, v)
				}
				m.PendingBytes = n
				continue
			}
			return Message{}, malformed("message", "unknown field %q", f)
		}
		md := m.Devices[d]
		switch kind + ":" {
		case MessageState(""):
			md.State = v
		case MessageKeyID(""):
			md.KeyID = v
		case MessageReport(""):
			md.Report = v
		default:
			return Message{}, malformed("message", "unknown field %q", f)
		}
		m.Devices[d] = md
	}
	for d, md := range m.Devices {
		if !validState(md.State) {
			return Message{}, malformed("message", "device %s in state %q", d, md.State)
		}
	}
	if _, flying := h[MessageExpires]; !flying {
		return m, m.checkSettled(h)
	}
	if err := m.parseTimes(h[MessageSent], h[MessageExpires]); err != nil {
		return Message{}, err
	}
	return m, m.check()
}

// checkSettled checks a settled record, read from h: nothing but what it keeps, no
// device with the message queued, and some device that received it (a message none
// received is deleted, not kept).
func (m *Message) checkSettled(h map[string]string) error {
	m.Settled = true
	if m.Business == "" {
		return malformed("settled message", "no business")
	}
	for f := range h {
		kind, _, perDevice := strings.Cut(f, ":")
		if !(f == MessageBusiness || f == MessageClientID || perDevice && (kind+":" == MessageState("") ||
			kind+":" == MessageReport(""))) {
			return malformed("settled message", "field %q is kept", f)
		}
	}
	received := false
	for d, md := range m.Devices {
		switch md.State {
		case StateQueued:
			return malformed("settled message", "device %s has it queued", d)
		case StateDelivered, StateRead:
			received = true
		}
	}
	if !received {
		return malformed("settled message", "no device received it")
	}
	return nil
}

// MessageFields are the fields that one device's view of a message is read with
// (HMGET), in the order ParseMessageFields expects: the message's own fields, then
// d's state, key id and report, then the business's signing key id.
func MessageFields(d string) []string {
	return []string{MessageBusiness, MessageCategory, MessageKind, MessageClientID, MessageSent, MessageExpires,
		MessageBody, MessageState(d), MessageKeyID(d), MessageReport(d), MessageSigningKey}
}

// ParseMessageFields reads device d's view of a message: the values of HMGET
// MessageFields(d), nil where a field is absent. Devices holds d alone.
func ParseMessageFields(d string, vals []any) (Message, error) {
	if len(vals) != len(MessageFields(d)) {
		return Message{}, malformed("message", "%d values, want %d", len(vals), len(MessageFields(d)))
	}
	v := make([]string, len(vals))
	for i, x := range vals {
		switch x := x.(type) {
		case nil:
		case string:
			v[i] = x
		default:
			return Message{}, malformed("message", "value %d is a %T", i, x)
		}
	}
	m := Message{Business: v[0], Category: v[1], Kind: v[2], ClientMessageID: v[3], BodyHash: v[6],
		Devices: map[string]MessageDevice{d: {State: v[7], KeyID: v[8], Report: v[9]}}, SigningKeyID: v[10]}
	if err := m.parseTimes(v[4], v[5]); err != nil {
		return Message{}, err
	}
	if !validState(v[7]) {
		return Message{}, malformed("message", "device %s in state %q", d, v[7])
	}
	return m, m.check()
}

func (m *Message) parseTimes(sent, expires string) error {
	var err1, err2 error
	m.Sent, err1 = parseMillis("message sent", sent)
	m.Expires, err2 = parseMillis("message expiry", expires)
	return errors.Join(err1, err2)
}

func (m Message) check() error {
	if m.Business == "" {
		return malformed("message", "no business")
	}
	if m.Category != CategoryTransactional && m.Category != CategoryMarketing {
		return malformed("message", "category %q", m.Category)
	}
	return nil
}

func validState(s string) bool {
	return s == StateQueued || s == StateDelivered || s == StateRead || s == StateExpired || s == StateFailed
}

// --- Preferences (hr:{u:U}:pref:B) -------------------------------------------------

// Fields of a pref hash, the recipient's relation to one business. Consent fields are
// per category (CategoryTransactional, CategoryMarketing): PrefOwn(c) and
// PrefRecorded(c), each with companions named by suffix.
const (
	// PrefBlocked is "1" while the recipient blocks the business, "0" after an unblock.
	PrefBlocked = "blk"
	// PrefBlockedAt is when the recipient last blocked or unblocked it (ms).
	PrefBlockedAt = "blk_at"
	// PrefPairTAT is the theoretical arrival time (ms) of the pair rate: the
	// business-to-recipient GCRA of admit.lua.
	PrefPairTAT = "tat"
	// PrefLast is when the business's last message was admitted (ms).
	PrefLast = "last"
)

// Consent values, as pref fields hold them; "" is no choice.
const (
	ConsentIn  = "in"
	ConsentOut = "out"
)

// PrefOwn is the field of the recipient's own consent to category c (ConsentIn or
// ConsentOut); PrefOwn(c)+"_at" is when it was set (ms).
func PrefOwn(c string) string { return "u_" + c }

// PrefRecorded is the field of the consent the business recorded for category c;
// PrefRecorded(c) + "_at" (when, ms), "_src" (how it was collected), "_ref" (the
// business's reference) and "_col" (when it was collected, ms) are its evidence.
func PrefRecorded(c string) string { return "b_" + c }

// Pref is a pref hash.
type Pref struct {
	Blocked   bool
	BlockedAt time.Time
	// Own and Recorded are the recipient's own and the business's consents, by
	// category; a category without one is absent.
	Own      map[string]OwnConsent
	Recorded map[string]RecordedConsent
	PairTAT  time.Time
	Last     time.Time
}

// OwnConsent is the recipient's own choice for a category.
type OwnConsent struct {
	Consent string
	At      time.Time
}

// RecordedConsent is a consent a business recorded for a category, with its evidence.
type RecordedConsent struct {
	Consent   string
	At        time.Time
	Source    string
	Reference string
	Collected time.Time
}

// BlockFields are the pref fields that record a block (on) or an unblock at t.
func BlockFields(on bool, at time.Time) []any {
	v := "0"
	if on {
		v = "1"
	}
	return []any{PrefBlocked, v, PrefBlockedAt, millis(at)}
}

// Fields are the pref fields that record c as the recipient's choice for category cat.
func (c OwnConsent) Fields(cat string) []any {
	f := PrefOwn(cat)
	return []any{f, c.Consent, f + "_at", millis(c.At)}
}

// Fields are the pref fields that record c as the business's record for category cat.
func (c RecordedConsent) Fields(cat string) []any {
	f := PrefRecorded(cat)
	return []any{f, c.Consent, f + "_at", millis(c.At), f + "_src", c.Source, f + "_ref", c.Reference,
		f + "_col", millis(c.Collected)}
}

// ParsePref reads a pref hash (HGETALL).
func ParsePref(h map[string]string) (Pref, error) {
	p := Pref{Blocked: h[PrefBlocked] == "1", Own: map[string]OwnConsent{}, Recorded: map[string]RecordedConsent{}}
	if b := h[PrefBlocked]; b != "" && b != "0" && b != "1" {
		return Pref{}, malformed("pref", "%s = %q", PrefBlocked, b)
	}
	var errs []error
	var err error
	p.BlockedAt, err = optMillis("pref block time", h[PrefBlockedAt])
	errs = append(errs, err)
	p.PairTAT, err = optMillis("pref pair rate", h[PrefPairTAT])
	errs = append(errs, err)
	p.Last, err = optMillis("pref last", h[PrefLast])
	errs = append(errs, err)
	for f, v := range h {
		switch f {
		case PrefBlocked, PrefBlockedAt, PrefPairTAT, PrefLast:
			continue
		}
		who, rest, _ := strings.Cut(f, "_")
		cat, suffix, _ := strings.Cut(rest, "_")
		if cat != CategoryTransactional && cat != CategoryMarketing || who != "u" && who != "b" {
			return Pref{}, malformed("pref", "unknown field %q", f)
		}
		if suffix == "" && v != ConsentIn && v != ConsentOut {
			return Pref{}, malformed("pref", "%s = %q", f, v)
		}
		if who == "u" {
			c := p.Own[cat]
			switch suffix {
			case "":
				c.Consent = v
			case "at":
				c.At, err = parseMillis("pref "+f, v)
				errs = append(errs, err)
			default:
				return Pref{}, malformed("pref", "unknown field %q", f)
			}
			p.Own[cat] = c
			continue
		}
		c := p.Recorded[cat]
		switch suffix {
		case "":
			c.Consent = v
		case "at":
			c.At, err = parseMillis("pref "+f, v)
			errs = append(errs, err)
		case "src":
			c.Source = v
		case "ref":
			c.Reference = v
		case "col":
			c.Collected, err = parseMillis("pref "+f, v)
			errs = append(errs, err)
		default:
			return Pref{}, malformed("pref", "unknown field %q", f)
		}
		p.Recorded[cat] = c
	}
	if err := errors.Join(errs...); err != nil {
		return Pref{}, err
	}
	for cat, c := range p.Own {
		if c.Consent == "" {
			return Pref{}, malformed("pref", "%s without %s", PrefOwn(cat)+"_at", PrefOwn(cat))
		}
	}
	for cat, c := range p.Recorded {
		if c.Consent == "" {
			return Pref{}, malformed("pref", "evidence without %s", PrefRecorded(cat))
		}
	}
	return p, nil
}

// --- Consent log (hr:{u:U}:clog) ---------------------------------------------------

// Who changed a consent, as consent log entries say.
const ConsentByUser = "user"

// ConsentByBusiness names a business's record of a consent it collected by source.
func ConsentByBusiness(source string) string { return "business:" + source }

// ConsentChange is an entry of a recipient's consent log: a block or unblock
// {b, what, by, t}, the recipient's consent {b, c, v, by, t}, or a business's record
// {b, c, v, by, ref, col, t}.
type ConsentChange struct {
	Business string
	// What is "block" or "unblock" for a block change, "" for a consent.
	What string
	// Category and Consent are the consent set (consents only).
	Category string
	Consent  string
	// By is ConsentByUser or ConsentByBusiness(source).
	By string
	// Reference and Collected are the business's evidence (its records only).
	Reference string
	Collected time.Time
	Time      time.Time
}

// Values are the entry's stream fields (XADD).
func (c ConsentChange) Values() []any {
	kv := []any{"b", c.Business}
	if c.What != "" {
		kv = append(kv, "what", c.What, "by", c.By)
	} else {
		kv = append(kv, "c", c.Category, "v", c.Consent, "by", c.By)
		if c.By != ConsentByUser {
			kv = append(kv, "ref", c.Reference, "col", millis(c.Collected))
		}
	}
	return append(kv, "t", millis(c.Time))
}

// ParseConsentChange reads a consent log entry.
func ParseConsentChange(values map[string]any) (ConsentChange, error) {
	s := func(f string) string { v, _ := values[f].(string); return v }
	c := ConsentChange{Business: s("b"), What: s("what"), Category: s("c"), Consent: s("v"), By: s("by"),
		Reference: s("ref")}
	var err1, err2 error
	c.Time, err1 = parseMillis("consent log time", s("t"))
	c.Collected, err2 = optMillis("consent log collected", s("col"))
	if err := errors.Join(err1, err2); err != nil {
		return ConsentChange{}, err
	}
	switch {
	case c.Business == "":
		return ConsentChange{}, malformed("consent log", "no business")
	case c.What != "" && c.What != "block" && c.What != "unblock":
		return ConsentChange{}, malformed("consent log", "what = %q", c.What)
	case c.What == "" && (c.Category != CategoryTransactional && c.Category != CategoryMarketing ||
		c.Consent != ConsentIn && c.Consent != ConsentOut):
		return ConsentChange{}, malformed("consent log", "consent %q for category %q", c.Consent, c.Category)
	case c.By != ConsentByUser && !strings.HasPrefix(c.By, ConsentByBusiness("")):
		return ConsentChange{}, malformed("consent log", "by %q", c.By)
	}
	return c, nil
}

// --- Verification codes (hr:{u:U}:code) ---------------------------------------------

// Fields of a pending verification code.
const (
	// CodeHash is the hex SHA-256 of the code; the code is never stored.
	CodeHash = "h"
	// CodeFailures counts wrong guesses.
	CodeFailures = "n"
)

// Code is a pending verification code.
type Code struct {
	Hash     string
	Failures int
}

// Fields are the code's hash fields, for HSET.
func (c Code) Fields() []any { return []any{CodeHash, c.Hash, CodeFailures, strconv.Itoa(c.Failures)} }

// ParseCode reads a code hash (HGETALL).
func ParseCode(h map[string]string) (Code, error) {
	n, err := strconv.Atoi(h[CodeFailures])
	if err != nil || h[CodeHash] == "" || len(h) != 2 {
		return Code{}, malformed("verification code", "fields %v", slices.Sorted(maps.Keys(h)))
	}
	return Code{Hash: h[CodeHash], Failures: n}, nil
}

// --- Verification counts (hr:{u:U}:vfy) ---------------------------------------------

// Fields of a number's verification counts.
const (
	// VerifyFailures counts wrong codes offered for the number in the window, across
	// every code issued in it.
	VerifyFailures = "f"
	// VerifyIssued counts codes issued for the number in the window.
	VerifyIssued = "i"
)

// VerifyCounts are what a number's verification window has seen so far; the hash
// expires when the window ends.
type VerifyCounts struct {
	Failures int
	Issued   int
}

// ParseVerifyCounts reads a verification counts hash (HGETALL).
func ParseVerifyCounts(h map[string]string) (VerifyCounts, error) {
	var c VerifyCounts
	for f, v := range h {
		n, err := strconv.Atoi(v)
		switch {
		case err != nil || n < 0:
			return VerifyCounts{}, malformed("verification counts", "%s = %q", f, v)
		case f == VerifyFailures:
			c.Failures = n
		case f == VerifyIssued:
			c.Issued = n
		default:
			return VerifyCounts{}, malformed("verification counts", "field %q", f)
		}
	}
	return c, nil
}

// --- Businesses (hr:{b:B}) ---------------------------------------------------------

// Fields of a business record.
const (
	BusinessName    = "display_name"
	BusinessCreated = "created"
	// BusinessPerSecond, BusinessBurst and BusinessDailyUnique are its limits, written
	// together: messages per second (a decimal), burst, and people newly contacted per
	// window (0: no limit).
	BusinessPerSecond   = "mps"
	BusinessBurst       = "burst"
	BusinessDailyUnique = "uniq"
	// BusinessSigningKey is the id (e2e.KeyID) of its current signing key, once it
	// registers one: the key a message that names none is delivered with.
	// BusinessSigningKeyOf fields keep each key with how it came (SigningKeyRecord).
	BusinessSigningKey = "sigkey"
	// BusinessPending counts the bytes its messages in flight hold (Message.PendingBytes):
	// the forwarder adds each ACCEPTED event's and takes off each settled one's, so it
	// lags them by the forwarding delay. Absent means 0.
	BusinessPending = "pend"
)

// BusinessSigningKeyOf is the field keeping the business's signing key with id keyID
// (e2e.KeyID of the key): a SigningKeyRecord line.
func BusinessSigningKeyOf(keyID string) string { return BusinessSigningKey + ":" + keyID }

// How a business's signing key came to be one (SigningKeyRecord.Origin).
const (
	// SigningKeyFirst is the business's first key, which needed no endorsement.
	SigningKeyFirst = "f"
	// SigningKeyEndorsed is a key another key of the business endorsed.
	SigningKeyEndorsed = "e"
	// SigningKeyReplaced is a key the operator set in place of lost ones: nothing
	// vouches for it.
	SigningKeyReplaced = "r"
)

// Where a business's signing key stands (SigningKeyRecord.State).
const (
	// SigningKeyInUse: messages signed with it are delivered with it, and it may
	// endorse a new key.
	SigningKeyInUse = "u"
	// SigningKeySetAside: an operator's replacement came after it. Messages signed with
	// it are still delivered with it, but it endorses no key: whoever may hold a lost
	// key cannot vouch for one of their own.
	SigningKeySetAside = "s"
	// SigningKeyRetired: the business retired it. It is kept only as a link of the
	// chain of a later key, until no chain needs it.
	SigningKeyRetired = "x"
)

// SigningKeyRecord is one of a business's signing keys, the line
//
//	public key (standard base64)|origin|endorsed by|endorsement (standard base64)|state
//
// (endorsed by and endorsement empty unless origin is SigningKeyEndorsed).
type SigningKeyRecord struct {
	// PublicKey is the Ed25519 public key (32 bytes).
	PublicKey []byte
	// Origin is SigningKeyFirst, SigningKeyEndorsed or SigningKeyReplaced.
	Origin string
	// EndorsedBy is the id of the key that endorsed this one, and Endorsement its
	// signature (e2e.EndorseSigningKey); set for SigningKeyEndorsed only.
	EndorsedBy  string
	Endorsement []byte
	// State is SigningKeyInUse, SigningKeySetAside or SigningKeyRetired.
	State string
}

// Encode is the record's stored line.
func (r SigningKeyRecord) Encode() string {
	return strings.Join([]string{base64.StdEncoding.EncodeToString(r.PublicKey), r.Origin, r.EndorsedBy,
		base64.StdEncoding.EncodeToString(r.Endorsement), r.State}, "|")
}

// ParseSigningKeyRecord reads a stored signing key line.
func ParseSigningKeyRecord(line string) (SigningKeyRecord, error) {
	f := strings.Split(line, "|")
	if len(f) != 5 {
		return SigningKeyRecord{}, malformed("signing key", "%d fields, want 5", len(f))
	}
	pub, err1 := base64.StdEncoding.DecodeString(f[0])
	sig, err2 := base64.StdEncoding.DecodeString(f[3])
	if errors.Join(err1, err2) != nil {
		return SigningKeyRecord{}, malformed("signing key", "not base64: %q", line)
	}
	r := SigningKeyRecord{PublicKey: pub, Origin: f[1], EndorsedBy: f[2], State: f[4]}
	if len(sig) > 0 {
		r.Endorsement = sig
	}
	endorsed := r.Origin == SigningKeyEndorsed
	switch {
	case len(r.PublicKey) != 32:
		return SigningKeyRecord{}, malformed("signing key", "public key of %d bytes, want 32", len(r.PublicKey))
	case !slices.Contains([]string{SigningKeyFirst, SigningKeyEndorsed, SigningKeyReplaced}, r.Origin):
		return SigningKeyRecord{}, malformed("signing key", "origin %q", r.Origin)
	case endorsed != (r.EndorsedBy != "") || endorsed != (len(r.Endorsement) > 0):
		return SigningKeyRecord{}, malformed("signing key", "origin %s with endorser %q and %d-byte endorsement",
			r.Origin, r.EndorsedBy, len(r.Endorsement))
	case !slices.Contains([]string{SigningKeyInUse, SigningKeySetAside, SigningKeyRetired}, r.State):
		return SigningKeyRecord{}, malformed("signing key", "state %q", r.State)
	}
	return r, nil
}

// BusinessRecord is a business's hash.
type BusinessRecord struct {
	DisplayName string
	Created     time.Time
	// Limits is nil when the record holds none (the business's defaults apply).
	Limits *BusinessLimits
	// CurrentSigningKey is the id of the current signing key; "" before the first.
	CurrentSigningKey string
	// SigningKeys are the business's signing keys by id (BusinessSigningKeyOf): every
	// key not retired, and retired ones still on a later key's chain.
	SigningKeys map[string]SigningKeyRecord
	// PendingBytes is BusinessPending; only the forwarder writes it (Fields leaves it
	// out).
	PendingBytes int64
}

// BusinessLimits are a business's stored limits.
type BusinessLimits struct {
	PerSecond   float64
	Burst       int
	DailyUnique int
}

// Fields are the record's fields, for HSET; it writes only what r holds (a zero
// Created, nil Limits, "" name or current key are left out).
func (r BusinessRecord) Fields() []any {
	kv := optField(nil, BusinessName, r.DisplayName)
	if !r.Created.IsZero() {
		kv = append(kv, BusinessCreated, millis(r.Created))
	}
	if l := r.Limits; l != nil {
		kv = append(kv, BusinessPerSecond, strconv.FormatFloat(l.PerSecond, 'f', -1, 64), BusinessBurst,
			strconv.Itoa(l.Burst), BusinessDailyUnique, strconv.Itoa(l.DailyUnique))
	}
	kv = optField(kv, BusinessSigningKey, r.CurrentSigningKey)
	for _, id := range slices.Sorted(maps.Keys(r.SigningKeys)) {
		kv = append(kv, BusinessSigningKeyOf(id), r.SigningKeys[id].Encode())
	}
	return kv
}

// ParseBusiness reads a business hash (HGETALL). An empty hash is no business: its
// DisplayName is "".
func ParseBusiness(h map[string]string) (BusinessRecord, error) {
	r := BusinessRecord{DisplayName: h[BusinessName], CurrentSigningKey: h[BusinessSigningKey]}
	for f, v := range h {
		id, ok := strings.CutPrefix(f, BusinessSigningKeyOf(""))
		if !ok {
			continue
		}
		k, err := ParseSigningKeyRecord(v)
		if err != nil {
			return BusinessRecord{}, fmt.Errorf("business signing key %s: %w", id, err)
		}
		if r.SigningKeys == nil {
			r.SigningKeys = map[string]SigningKeyRecord{}
		}
		r.SigningKeys[id] = k
	}
	if cur := r.CurrentSigningKey; cur != "" {
		if k, ok := r.SigningKeys[cur]; !ok || k.State != SigningKeyInUse {
			return BusinessRecord{}, malformed("business", "current signing key %s is not a key in use", cur)
		}
	}
	var err error
	if r.Created, err = optMillis("business created", h[BusinessCreated]); err != nil {
		return BusinessRecord{}, err
	}
	if p := h[BusinessPending]; p != "" {
		if r.PendingBytes, err = strconv.ParseInt(p, 10, 64); err != nil {
			return BusinessRecord{}, malformed("business", "%s = %q", BusinessPending, p)
		}
	}
	mps, burst, uniq := h[BusinessPerSecond], h[BusinessBurst], h[BusinessDailyUnique]
	if mps == "" && burst == "" && uniq == "" {
		return r, nil
	}
	l := &BusinessLimits{}
	var err1, err2, err3 error
	l.PerSecond, err1 = strconv.ParseFloat(mps, 64)
	l.Burst, err2 = strconv.Atoi(burst)
	l.DailyUnique, err3 = strconv.Atoi(uniq)
	if errors.Join(err1, err2, err3) != nil {
		return BusinessRecord{}, malformed("business limits", "mps %q, burst %q, uniq %q", mps, burst, uniq)
	}
	r.Limits = l
	return r, nil
}

// --- API keys (hr:{k:K}) -----------------------------------------------------------

// Fields of an API key record.
const (
	APIKeyBusiness = "business"
	// APIKeyHash is the hex SHA-256 of the whole key; the key is never stored.
	APIKeyHash    = "hash"
	APIKeyCreated = "created"
	// APIKeyRevoked is when the key was revoked (ms); absent while it is active.
	APIKeyRevoked = "revoked"
)

// APIKeyRecord is an API key's hash.
type APIKeyRecord struct {
	Business string
	Hash     string
	Created  time.Time
	// Revoked is the zero time while the key is active.
	Revoked time.Time
}

// Fields are the record's fields, for HSET (revoked only once it is).
func (r APIKeyRecord) Fields() []any {
	kv := []any{APIKeyBusiness, r.Business, APIKeyHash, r.Hash, APIKeyCreated, millis(r.Created)}
	if !r.Revoked.IsZero() {
		kv = append(kv, APIKeyRevoked, millis(r.Revoked))
	}
	return kv
}

// ParseAPIKey reads an API key hash (HGETALL).
func ParseAPIKey(h map[string]string) (APIKeyRecord, error) {
	r := APIKeyRecord{Business: h[APIKeyBusiness], Hash: h[APIKeyHash]}
	if r.Business == "" || r.Hash == "" {
		return APIKeyRecord{}, malformed("API key", "no business or hash")
	}
	var err1, err2 error
	r.Created, err1 = parseMillis("API key created", h[APIKeyCreated])
	r.Revoked, err2 = optMillis("API key revoked", h[APIKeyRevoked])
	if err := errors.Join(err1, err2); err != nil {
		return APIKeyRecord{}, err
	}
	return r, nil
}

// --- Quality counters (hr:{b:B}:q) -------------------------------------------------

// QualityDelivered is the field counting deliveries in time bucket n (Unix time
// divided by the bucket width, business.QualityPolicy.Bucket).
func QualityDelivered(n int64) string { return "d:" + strconv.FormatInt(n, 10) }

// QualityReported is the field counting reports in time bucket n.
func QualityReported(n int64) string { return "r:" + strconv.FormatInt(n, 10) }

// Other fields of the quality hash.
const (
	// QualityStepped is when the business's limits last stepped down (ms).
	QualityStepped = "stepped"
	// QualityStepping was a lock (ms) that gateways before the one-script step-down
	// held while stepping; a leftover one is read past and never written.
	QualityStepping = "stepping"
)

// QualityCounters are a quality hash.
type QualityCounters struct {
	// Delivered and Reported are counts by time bucket.
	Delivered map[int64]int64
	Reported  map[int64]int64
	Stepped   time.Time
}

// ParseQuality reads a quality hash (HGETALL).
func ParseQuality(h map[string]string) (QualityCounters, error) {
	q := QualityCounters{Delivered: map[int64]int64{}, Reported: map[int64]int64{}}
	var err error
	for f, v := range h {
		switch f {
		case QualityStepped:
			q.Stepped, err = parseMillis("quality "+f, v)
		case QualityStepping:
		default:
			kind, bucket, _ := strings.Cut(f, ":")
			n, err1 := strconv.ParseInt(bucket, 10, 64)
			c, err2 := strconv.ParseInt(v, 10, 64)
			switch {
			case errors.Join(err1, err2) != nil:
				err = malformed("quality", "%s = %q", f, v)
			case kind == "d":
				q.Delivered[n] = c
			case kind == "r":
				q.Reported[n] = c
			default:
				err = malformed("quality", "unknown field %q", f)
			}
		}
		if err != nil {
			return QualityCounters{}, err
		}
	}
	return q, nil
}

// --- Rate buckets (hr:{b:B}:gcra) --------------------------------------------------

// RateBucket is a business's global token bucket, which only ratelimit's lease.lua
// writes: {tokens: what it held at ts (a decimal), ts: microseconds since the Unix
// epoch}.
type RateBucket struct {
	Tokens float64
	At     time.Time
}

// ParseRateBucket reads a rate bucket hash (HGETALL).
func ParseRateBucket(h map[string]string) (RateBucket, error) {
	tokens, err1 := strconv.ParseFloat(h["tokens"], 64)
	us, err2 := strconv.ParseInt(h["ts"], 10, 64)
	if errors.Join(err1, err2) != nil || len(h) != 2 {
		return RateBucket{}, malformed("rate bucket", "%v", h)
	}
	return RateBucket{Tokens: tokens, At: time.UnixMicro(us)}, nil
}

// --- New-recipient allowance (hr:{b:B}:new) ----------------------------------------

// AllowanceUnit is the member naming unit i (from 1) of the allowance lease lease, in
// a business's sorted set of leased units, scored by the lease time (ms).
// admission/allowance.lua writes the same members (lease .. ":" .. i).
func AllowanceUnit(lease string, i int) string { return lease + ":" + strconv.Itoa(i) }

// ParseAllowanceUnit reads a member of the allowance set.
func ParseAllowanceUnit(member string) (lease string, i int, err error) {
	lease, n, ok := strings.Cut(member, ":")
	i, err = strconv.Atoi(n)
	if !ok || lease == "" || err != nil || i < 1 {
		return "", 0, malformed("allowance unit", "%q", member)
	}
	return lease, i, nil
}

// --- Push endpoints (hr:{u:U}:push) ---------------------------------------------------

// Push services, as PushEndpoint.Service holds them.
const (
	PushWeb  = "w"
	PushFCM  = "f"
	PushAPNs = "a"
)

// PushEndpoint is where a device is woken: a service and its address there (a Web
// Push endpoint URL, an FCM or APNs device token), stored as the line service|address.
type PushEndpoint struct {
	Service string
	Address string
}

// Encode is the endpoint's stored line.
func (p PushEndpoint) Encode() string { return p.Service + "|" + p.Address }

// ParsePushEndpoint reads a stored endpoint line.
func ParsePushEndpoint(line string) (PushEndpoint, error) {
	s, a, ok := strings.Cut(line, "|")
	if !ok || a == "" || (s != PushWeb && s != PushFCM && s != PushAPNs) {
		return PushEndpoint{}, malformed("push endpoint", "%q", line)
	}
	return PushEndpoint{Service: s, Address: a}, nil
}

// --- Webhooks (hr:{b:B}:wh) ----------------------------------------------------------

// Fields of a business's webhook hash.
const (
	WebhookURL          = "url"
	WebhookSecret       = "sec"
	WebhookPrevSecret   = "psec"   // the secret before the last rotation, while it still signs
	WebhookPrevUntil    = "puntil" // ms: until when the previous secret signs too
	WebhookCursor       = "cur"    // the stream id delivered up to ("0-0": none yet)
	WebhookFailingSince = "fail"   // ms: when the first failure in a row was; absent when none
	WebhookAttempts     = "tries"  // failures in a row
	WebhookNextAttempt  = "next"   // ms: no attempt before
	WebhookGaveUp       = "gave"   // ms: when delivery was given up; absent while it goes on
	WebhookLastError    = "err"    // the last failure, as said to the operator
	WebhookDelivered    = "ok"     // events delivered since the webhook was set
)

// WebhookRecord is a business's webhook.
type WebhookRecord struct {
	URL          string
	Secret       string
	PrevSecret   string
	PrevUntil    time.Time
	Cursor       string
	FailingSince time.Time
	Attempts     int
	NextAttempt  time.Time
	GaveUp       time.Time
	LastError    string
	Delivered    int64
}

// ParseWebhook reads a webhook hash (HGETALL).
func ParseWebhook(h map[string]string) (WebhookRecord, error) {
	r := WebhookRecord{URL: h[WebhookURL], Secret: h[WebhookSecret], PrevSecret: h[WebhookPrevSecret],
		Cursor: h[WebhookCursor], LastError: h[WebhookLastError]}
	if r.URL == "" || r.Secret == "" || r.Cursor == "" {
		return WebhookRecord{}, malformed("webhook", "no url, secret or cursor")
	}
	var errs []error
	opt := func(f string, t *time.Time) {
		if v, ok := h[f]; ok {
			var err error
			*t, err = parseMillis("webhook "+f, v)
			errs = append(errs, err)
		}
	}
	opt(WebhookPrevUntil, &r.PrevUntil)
	opt(WebhookFailingSince, &r.FailingSince)
	opt(WebhookNextAttempt, &r.NextAttempt)
	opt(WebhookGaveUp, &r.GaveUp)
	if v, ok := h[WebhookAttempts]; ok {
		n, err := strconv.Atoi(v)
		r.Attempts = n
		errs = append(errs, err)
	}
	if v, ok := h[WebhookDelivered]; ok {
		n, err := strconv.ParseInt(v, 10, 64)
		r.Delivered = n
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return WebhookRecord{}, malformed("webhook", "%v", err)
	}
	return r, nil
}

// --- Lua ---------------------------------------------------------------------------

//go:embed values.lua
var luaValues string

// Lua joins a script's source files behind values.lua, the Lua side of this file's
// formats, which every script of blocklist and delivery is built with. Lua reports
// line numbers counted from the first line of values.lua.
func Lua(sources ...string) string {
	return luaValues + "\n" + strings.Join(sources, "\n")
}
