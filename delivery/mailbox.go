package delivery

import (
	"context"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/heraldhq/herald/internal/keys"
	"github.com/heraldhq/herald/internal/rscript"
	"github.com/redis/go-redis/v9"
)

//go:embed fetch.lua
var fetchSource string

//go:embed ack.lua
var ackSource string

//go:embed undeliverable.lua
var undeliverableSource string

var (
	fetchScript = rscript.New(keys.Lua(fetchSource))
	ackScript   = rscript.New(keys.Lua(ackSource))

	undeliverableScript = rscript.New(keys.Lua(undeliverableSource))
	rejectScript        = rscript.New(keys.Lua(rejectSource))
)

//go:embed reject.lua
var rejectSource string

// fetchLimit is how many deliveries one fetch returns, fetchBytes about how many
// envelope bytes (one delivery at least): what one Receive stream holds at a time,
// besides bodies, which come from a cache the gateway shares; noticePage is how many
// notices (fetch.lua's XRANGE COUNT).
const (
	fetchLimit = 64
	fetchBytes = 256 << 10
	noticePage = 64
)

// Delivery is one queued message for one device.
type Delivery struct {
	MessageID       string
	Business        string
	Category        string
	Kind            string
	ClientMessageID string
	Sent            time.Time
	Expires         time.Time
	Ciphertext      []byte
	// Body is the sealed body Ciphertext unlocks, when the business sent one.
	Body []byte
	// KeyID is the device key the envelope was sealed to, if the business said.
	KeyID string
	// SigningKeyID is the business key the message was signed with, if it said.
	SigningKeyID string
}

// Mailboxes reads device mailboxes and records acknowledgements.
type Mailboxes struct {
	rdb redis.UniversalClient
	// batch carries the fetches, acks and rejections of every stream and device on
	// this gateway to Redis together when they come at once (rscript.Batcher): a
	// broadcast wakes many streams in the same millisecond.
	batch  *rscript.Batcher
	hub    *hub
	out    *Forwarder
	exp    *Expiries
	now    func() time.Time
	poll   time.Duration // see WithPollInterval
	window int64         // receipt window in ms; see WithReceiptWindow
	bodies *bodyCache
	// live says whether streams mark their devices live (for the waker: only when a
	// push service is configured)
	live  bool
	depth Histogram // observes each fetch's mailbox size (Metrics.Mailbox)
}

// newMailboxes returns Mailboxes on rdb, woken by hub, whose status events out
// forwards and whose settled messages leave exp's index.
func newMailboxes(rdb redis.UniversalClient, hub *hub, out *Forwarder, exp *Expiries, now func() time.Time,
	poll, receiptWindow time.Duration) *Mailboxes {
	return &Mailboxes{rdb: rdb, batch: rscript.NewBatcher(rdb, 2, 256, 256), hub: hub, out: out, exp: exp, now: now, poll: poll,
		window: receiptWindow.Milliseconds(), bodies: newBodyCache(64 << 20), depth: nop{}}
}

// Notice is a notice about one of the person's devices (keys.Notice), with its id to
// acknowledge it by (Devices.AckNotices).
type Notice struct {
	ID string
	keys.Notice
}

// Stream sends every queued delivery of the device, oldest first, then each new one
// as it is admitted, until ctx ends or send fails; and, through notify, every notice
// about the person's devices the device has not acknowledged, as they come. A delivery
// or notice is sent once per Stream; one not acknowledged is sent again by the next
// Stream. It returns nil when ctx ends, and ErrBadToken once the device is removed.
func (m *Mailboxes) Stream(ctx context.Context, p Principal, send func(Delivery) error, notify func(Notice) error) error {
	u := keys.Recipient(p.UID)
	wake, stop := m.hub.Watch(ctx, u.Channel())
	defer stop()
	// The stream's live mark (set by each fetch, to this stream's own value) goes
	// with it, so that wake-ups start at once rather than when the mark would expire;
	// unless another stream of the device set it since, which is still open.
	stream := hex.EncodeToString(random(8))
	if m.live {
		defer func() {
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
			defer cancel()
			unliveScript.Run(dctx, m.rdb, []string{u.Live(p.DeviceID)}, stream)
		}()
	}
	// Events a crashed gateway left behind for this recipient go out now.
	m.out.Kick(p.UID)
	poll := time.NewTicker(m.poll)
	defer poll.Stop()
	after, seen := "-inf", int64(0) // the mailbox position streamed up to
	noticed := ""                   // the last notice streamed
	for {
		ds, ns, last, seq, full, err := m.fetch(ctx, p, stream, after, noticed)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		for _, n := range ns {
			if err := notify(n); err != nil {
				return err
			}
			noticed = n.ID
		}
		if seq < seen {
			// The recipient's admission sequence went backwards: Redis came back
			// without its last writes, and messages admitted since sit below the
			// position this stream reached. Start again from the top of the mailbox
			// (what is sent twice, the device drops as a replay).
			after, seen = "-inf", 0
			continue
		}
		if last != "" {
			after = "(" + last
			seen, _ = strconv.ParseInt(last, 10, 64)
		}
		for _, d := range ds {
			if err := send(d); err != nil {
				return err
			}
		}
		if full {
			continue // the mailbox or the notices hold more right now
		}
		// Whatever is admitted from now on announces itself (wake keeps one
		// announcement that came during the fetch), so there is no need to look again
		// before one comes.
		select {
		case <-ctx.Done():
			return nil
		case <-wake:
		case <-poll.C:
		}
	}
}

// fetch returns the next deliveries after the mailbox position after and the notices
// after noticed (and after the device's acknowledged ones), the position of the last
// delivery it looked at ("" for none), the recipient's admission sequence now, and
// whether a page came back full (there may be more right now).
func (m *Mailboxes) fetch(ctx context.Context, p Principal, stream, after, noticed string) ([]Delivery, []Notice, string, int64, bool, error) {
	u := keys.Recipient(p.UID)
	cmds, err := m.batch.RunAfter(ctx, nil, fetchScript, []rscript.Call{{Keys: []string{u.Mailbox(p.DeviceID), u.Outbox(),
		u.Sequence(), u.Devices(), u.Notices(), u.NoticeCursors(), u.Live(p.DeviceID)},
		Args: []any{p.DeviceID, after, m.now().UnixMilli(), fetchLimit, u.MessagePrefix(), m.window, noticed,
			m.liveFor(), fetchBytes, stream}}})
	var reply []any
	if err == nil {
		reply, err = cmds[0].Slice()
	}
	if err != nil {
		return nil, nil, "", 0, false, fmt.Errorf("fetch: %w", err)
	}
	last, _ := reply[0].(string)
	seqText, _ := reply[2].(string)
	seq, err := strconv.ParseInt(seqText, 10, 64)
	if err != nil {
		return nil, nil, "", 0, false, fmt.Errorf("fetch: admission sequence %q: %w", seqText, err)
	}
	if alive, _ := reply[3].(int64); alive != 1 {
		return nil, nil, "", 0, false, ErrBadToken
	}
	if n, _ := reply[1].(int64); n > 0 {
		m.out.Kick(p.UID)
	}
	more, _ := reply[4].(int64)
	depth, _ := reply[5].(int64)
	m.depth.Observe(float64(depth))
	count, _ := reply[6].(int64)
	full := more == 1 || count >= noticePage
	i := 7
	var ns []Notice
	for ; count > 0 && i+1 < len(reply); count, i = count-1, i+2 {
		id, _ := reply[i].(string)
		line, _ := reply[i+1].(string)
		n, err := keys.ParseNotice(line)
		if err != nil {
			return nil, nil, "", 0, false, fmt.Errorf("fetch: notice %s: %w", id, err)
		}
		ns = append(ns, Notice{ID: id, Notice: n})
	}
	var ds []Delivery
	var lost []string // queued, but unreadable: they cannot be delivered
	n := 2 + len(keys.MessageFields(p.DeviceID))
	for ; i+n <= len(reply); i += n {
		id, _ := reply[i].(string)
		env, _ := reply[i+1].(string)
		msg, err := keys.ParseMessageFields(p.DeviceID, reply[i+2:i+n])
		if err != nil {
			lost = append(lost, id)
			continue
		}
		d := Delivery{MessageID: id, Business: msg.Business, Category: msg.Category, Kind: msg.Kind,
			ClientMessageID: msg.ClientMessageID, Sent: msg.Sent, Expires: msg.Expires, Ciphertext: []byte(env),
			KeyID: msg.Devices[p.DeviceID].KeyID, SigningKeyID: msg.SigningKeyID}
		if msg.BodyHash != "" {
			d.Body = []byte(msg.BodyHash) // the hash, until loadBodies swaps in the body
		}
		ds = append(ds, d)
	}
	ds, missing, err := m.loadBodies(ctx, ds)
	if err != nil {
		return nil, nil, "", 0, false, err
	}
	if err := m.undeliverable(ctx, p, append(lost, missing...)); err != nil {
		return nil, nil, "", 0, false, err
	}
	return ds, ns, last, seq, full, nil
}

// undeliverable reports expired on the device the messages queued for it that it
// cannot be given, so they stop holding up its mailbox.
func (m *Mailboxes) undeliverable(ctx context.Context, p Principal, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	u := keys.Recipient(p.UID)
	args := []any{p.DeviceID, m.now().UnixMilli(), u.MessagePrefix(), m.window}
	for _, id := range ids {
		args = append(args, id)
	}
	if err := undeliverableScript.Run(ctx, m.rdb, []string{u.Mailbox(p.DeviceID), u.Outbox()}, args...).Err(); err != nil {
		return fmt.Errorf("expire undeliverable messages: %w", err)
	}
	m.out.Kick(p.UID)
	return nil
}

// bodyGrace is how long after its admission a message whose body is missing is
// waited for (fetch fails, and the next Receive tries again) rather than given up on.
// Admit writes a body in the same round trip as the admission, but on Redis Cluster
// on another node, at the same time; a write that failed is written again by the
// business's retry.
const bodyGrace = time.Minute

// loadBodies replaces each delivery's body hash by the body, from the cache or in one
// pipelined round trip for those it lacks. It returns the deliveries it could fill and
// the ids of those whose body is gone from Redis for longer than bodyGrace. A body
// that is unreachable, or missing for less, is an error: nothing is given up on.
func (m *Mailboxes) loadBodies(ctx context.Context, ds []Delivery) ([]Delivery, []string, error) {
	got := map[string][]byte{}
	want := map[string]*redis.StringCmd{}
	for _, d := range ds {
		if h := string(d.Body); h != "" {
			if b, ok := m.bodies.get(h); ok {
				got[h] = b
			} else {
				want[h] = nil
			}
		}
	}
	if len(want) > 0 {
		// Each GET's own error says whether its body is gone or unreachable.
		m.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for h := range want {
				want[h] = p.Get(ctx, keys.Body(h))
			}
			return nil
		})
		for h, c := range want {
			b, err := c.Bytes()
			switch {
			case err == nil:
				got[h] = b
				m.bodies.put(h, b)
			case !errors.Is(err, redis.Nil):
				return nil, nil, fmt.Errorf("load bodies: %w", err)
			}
		}
	}
	kept := ds[:0]
	var missing []string
	for _, d := range ds {
		if h := string(d.Body); h != "" {
			b, ok := got[h]
			if !ok && m.now().Sub(d.Sent) < bodyGrace {
				return nil, nil, fmt.Errorf("load bodies: body %s of message %s is not stored yet", h, d.MessageID)
			}
			if !ok {
				missing = append(missing, d.MessageID)
				continue
			}
			d.Body = b
		}
		kept = append(kept, d)
	}
	return kept, missing, nil
}

// Ack records that the device received (or read) the messages. It returns the ids
// that are not deliveries to this device or that expired first. The business's status
// events are durable in the recipient's outbox when Ack returns, and forwarded soon
// after.
func (m *Mailboxes) Ack(ctx context.Context, p Principal, ids []string, read bool) ([]string, error) {
	u := keys.Recipient(p.UID)
	r := "0"
	if read {
		r = "1"
	}
	args := []any{p.DeviceID, r, m.now().UnixMilli(), u.MessagePrefix(), m.window}
	for _, id := range ids {
		args = append(args, id)
	}
	unknown, err := m.settling(runIndexed(ctx, m.batch, p.UID, m.now(), ackScript,
		[]string{u.Mailbox(p.DeviceID), u.Outbox()}, args...))
	if err != nil {
		return nil, fmt.Errorf("ack: %w", err)
	}
	m.out.Kick(p.UID)
	return unknown, nil
}

// settling reads the reply of ack.lua or reject.lua, {unknown ids, settled ids}: it
// returns the unknown ones and takes the settled ones out of the expiry index, which
// has nothing left to report for them.
func (m *Mailboxes) settling(c *redis.Cmd) ([]string, error) {
	reply, err := c.Slice()
	if err != nil {
		return nil, err
	}
	if len(reply) != 2 {
		return nil, fmt.Errorf("reply of %d parts, want 2", len(reply))
	}
	lists := [2][]string{}
	for i := range lists {
		vals, _ := reply[i].([]any)
		for _, v := range vals {
			s, ok := v.(string)
			if !ok {
				return nil, fmt.Errorf("reply holds a %T, want message ids", v)
			}
			lists[i] = append(lists[i], s)
		}
	}
	m.exp.untrack(lists[1])
	return lists[0], nil
}

// Rejection is a delivery the device refused, and why (keys.Reject*).
type Rejection struct {
	MessageID string
	Reason    string
}

// Reject records that the device refused the deliveries: each queued one leaves the
// mailbox and is reported failed with its reason, never delivered. It returns the ids
// that are not queued deliveries to this device (acknowledged or expired first, or
// not its own); those keep their state.
func (m *Mailboxes) Reject(ctx context.Context, p Principal, rs []Rejection) ([]string, error) {
	u := keys.Recipient(p.UID)
	args := []any{p.DeviceID, m.now().UnixMilli(), u.MessagePrefix(), m.window}
	for _, r := range rs {
		args = append(args, r.MessageID, r.Reason)
	}
	unknown, err := m.settling(runIndexed(ctx, m.batch, p.UID, m.now(), rejectScript,
		[]string{u.Mailbox(p.DeviceID), u.Outbox()}, args...))
	if err != nil {
		return nil, fmt.Errorf("reject: %w", err)
	}
	m.out.Kick(p.UID)
	return unknown, nil
}

//go:embed report.lua
var reportSource string

var reportScript = rscript.New(keys.Lua(reportSource))

// ErrNotDelivered is returned for a report of a message that was not delivered to the
// device (or is gone).
var ErrNotDelivered = errors.New("no such message for this device")

// Report records the device's report of a message. It returns the business to count
// it against, or "" when the device had reported it already.
func (m *Mailboxes) Report(ctx context.Context, p Principal, id, reason string) (string, error) {
	res, err := reportScript.Run(ctx, m.rdb, []string{keys.Recipient(p.UID).Message(id)}, p.DeviceID, reason).Result()
	if errors.Is(err, redis.Nil) {
		return "", ErrNotDelivered
	}
	if err != nil {
		return "", fmt.Errorf("report: %w", err)
	}
	b, _ := res.(string)
	return b, nil
}

// liveFor is how long a fetch's live mark lasts: past the stream's next poll, so that
// an open stream always has one; 0, no mark, when no push service is configured, since
// only wake-ups read it.
func (m *Mailboxes) liveFor() int64 {
	if !m.live {
		return 0
	}
	return (3*m.poll + time.Second).Milliseconds()
}

//go:embed unlive.lua
var unliveSource string

var unliveScript = rscript.New(unliveSource)

// runner runs a script after other commands, in one round trip: rscript.Batcher, or
// rscript.RunAfter on a client (clientRunner).
type runner interface {
	RunAfter(ctx context.Context, first func(redis.Pipeliner), s *rscript.Script, calls []rscript.Call) ([]*redis.Cmd, error)
}

// clientRunner is rscript.RunAfter on one client, with no other caller's calls.
type clientRunner struct{ rdb rscript.Pipeliner }

func (c clientRunner) RunAfter(ctx context.Context, first func(redis.Pipeliner), s *rscript.Script, calls []rscript.Call) ([]*redis.Cmd, error) {
	return rscript.RunAfter(ctx, c.rdb, first, s, calls)
}

// runIndexed runs one call of script s for recipient uid, with the recipient added to
// the outbox index (keys.OutboxIndex) ahead of it in the same round trip: the script
// may add status events, and if this gateway dies before forwarding them, another
// finds them there.
func runIndexed(ctx context.Context, rdb runner, uid string, now time.Time, s *rscript.Script,
	ks []string, args ...any) *redis.Cmd {
	cmds, err := rdb.RunAfter(ctx, func(p redis.Pipeliner) {
		p.ZAdd(ctx, keys.OutboxIndex(uid), redis.Z{Score: float64(now.UnixMilli()), Member: uid})
	}, s, []rscript.Call{{Keys: ks, Args: args}})
	if err != nil {
		cmd := redis.NewCmd(ctx)
		cmd.SetErr(err)
		return cmd
	}
	return cmds[0]
}
