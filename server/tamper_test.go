package server

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/client"
	"github.com/heraldhq/herald/e2e"
	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	"github.com/heraldhq/herald/internal/redistest"
	"github.com/redis/go-redis/v9"
)

// sdkDevice registers a device through the device SDK.
func (g *gateway) sdkDevice(number string) *client.Device {
	g.t.Helper()
	code, err := g.admin.IssueVerificationCode(g.adminCtx(), &heraldv1.IssueVerificationCodeRequest{PhoneNumber: number})
	if err != nil {
		g.t.Fatal(err)
	}
	d, err := client.Register(context.Background(), g.conn, number, code.Code, e2e.MLKEM768X25519)
	if err != nil {
		g.t.Fatal(err)
	}
	pending, _ := d.Pending()
	g.approve(number, func(id, keyID string) error { return d.ApproveDevice(context.Background(), id, keyID) }, d.ID(),
		pending, d.KeyID())
	return d
}

// next runs the device's Receive until it yields once.
func next(t *testing.T, d *client.Device) (*client.Message, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for m, err := range d.Receive(ctx) {
		return m, err
	}
	t.Fatal("Receive yielded nothing")
	return nil, nil
}

// rejected checks that the device SDK refused a delivery, for the given reason.
func rejected(t *testing.T, m *client.Message, err error, reason error) {
	t.Helper()
	var rej *client.RejectedDeliveryError
	if m != nil || !errors.As(err, &rej) {
		t.Fatalf("got %v, %v; want the delivery rejected", m, err)
	}
	if !errors.Is(err, reason) {
		t.Fatalf("rejected for %v, want %v", err, reason)
	}
}

// msgKey is the Redis key of a message, from its id (the recipient's uid, a dot, the
// rest: see keys.NewMessageID).
func msgKey(id string) string {
	uid, _, _ := strings.Cut(id, ".")
	return "hr:{u:" + uid + "}:msg:" + id
}

// TestTamperingInRedisIsRejected plays someone with write access to Redis between
// admission and delivery: relabelling, moving a wrap to another device, forging a
// message, replaying an acked one. The device SDK refuses each.
func TestTamperingInRedisIsRejected(t *testing.T) {
	t.Parallel()
	if redistest.Memory() {
		t.Skip("edits redis-server directly")
	}
	g := startGateway(t)
	biz, key := g.newBusiness("Acme")
	other, otherKey := g.newBusiness("Other")
	ctx := context.Background()
	otherSigner, _ := e2e.GenerateSigningKey()
	if err := client.NewBusiness(g.conn, other, otherKey, otherSigner).RegisterSigningKey(ctx); err != nil {
		t.Fatal(err)
	}
	signer, _ := e2e.GenerateSigningKey()
	bus := client.NewBusiness(g.conn, biz, key, signer)
	if err := bus.RegisterSigningKey(ctx); err != nil {
		t.Fatal(err)
	}
	phone := g.sdkDevice(alice)
	rdb := g.rdb

	send := func(cat e2e.Category, kind e2e.Kind, text string) *client.Sent {
		t.Helper()
		s, err := bus.Send(ctx, alice, cat, kind, []byte(text))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	// A first, honest message: the device opens it and pins the business's key.
	s := send(e2e.Transactional, e2e.Receipt, "hello")
	if m, err := next(t, phone); err != nil || string(m.Body) != "hello" {
		t.Fatalf("honest message: %v, %v", m, err)
	}
	if err := phone.Ack(ctx, s.MessageID); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name   string
		edit   map[string]string
		reason error
	}{
		{"marketing relabelled as transactional", map[string]string{"c": "t", "k": "receipt"}, e2e.ErrHeaderMismatch},
		{"kind changed", map[string]string{"k": "reservation"}, e2e.ErrHeaderMismatch},
		// The delivery now claims the other business, whose (real) key did not sign it.
		{"business id changed", map[string]string{"b": other}, e2e.ErrBadSignature},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := phone.SetConsent(ctx, biz, e2e.Marketing, client.OptedIn); err != nil {
				t.Fatal(err)
			}
			s := send(e2e.Marketing, e2e.Offer, "20% off, "+tc.name)
			if err := rdb.HSet(ctx, msgKey(s.MessageID), tc.edit).Err(); err != nil {
				t.Fatal(err)
			}
			m, err := next(t, phone)
			rejected(t, m, err, tc.reason)
		})
	}

	t.Run("wrap moved to another device of the person", func(t *testing.T) {
		tablet := g.sdkDevice(alice)
		s := send(e2e.Transactional, e2e.Receipt, "for both")
		// Give the tablet the phone's envelope instead of its own.
		k := msgKey(s.MessageID)
		wrap, err := rdb.Get(ctx, k+":"+phone.ID()).Result()
		if err != nil {
			t.Fatal(err)
		}
		if err := rdb.Set(ctx, k+":"+tablet.ID(), wrap, time.Hour).Err(); err != nil {
			t.Fatal(err)
		}
		if err := rdb.HSet(ctx, k, "kid:"+tablet.ID(), phone.KeyID()).Err(); err != nil {
			t.Fatal(err)
		}
		m, err := next(t, tablet)
		rejected(t, m, err, e2e.ErrNotForThisDevice)
		// The phone's own copy is intact.
		if m, err := next(t, phone); err != nil || string(m.Body) != "for both" {
			t.Fatalf("the phone's copy: %v, %v", m, err)
		}
		phone.Ack(ctx, s.MessageID)
	})

	t.Run("forged message written into the mailbox", func(t *testing.T) {
		// Valid HPKE to the device's public key, sealed in the business's name by
		// someone without its signing key.
		forger, _ := e2e.GenerateSigningKey()
		look, err := g.messaging.LookupRecipient(as(key), &heraldv1.LookupRecipientRequest{Recipient: alice, Category: tx})
		if err != nil {
			t.Fatal(err)
		}
		var pub []byte
		for _, d := range look.Devices {
			if d.DeviceId == phone.ID() {
				pub = d.PublicKey
			}
		}
		h := e2e.Header{BusinessID: biz, Category: e2e.Transactional, Kind: e2e.AccountUpdate, ClientMessageID: "forged-1", SentTime: time.Now()}
		sealed, err := e2e.Seal(forger, h, []byte("Your account is locked: call +1 900 555 0100"),
			[]e2e.Recipient{{DeviceID: phone.ID(), PublicKey: pub, Algorithm: e2e.MLKEM768X25519}})
		if err != nil {
			t.Fatal(err)
		}
		uid, _, _ := strings.Cut(s.MessageID, ".")
		id := uid + ".forgedforgedforgedforge" // the shape of a message id
		k := msgKey(id)
		now := time.Now()
		rdb.HSet(ctx, k, "b", biz, "c", "t", "k", "account_update", "cm", "forged-1", "t", now.UnixMilli(),
			"x", now.Add(time.Hour).UnixMilli(), "bd", "", "s:"+phone.ID(), "q")
		rdb.Set(ctx, k+":"+phone.ID(), e2e.JoinEnvelope(sealed.Body, sealed.Wraps[phone.ID()]), time.Hour)
		rdb.ZAdd(ctx, "hr:{u:"+uid+"}:mb:"+phone.ID(), redis.Z{Score: 1e12, Member: id})
		m, err := next(t, phone)
		rejected(t, m, err, e2e.ErrBadSignature)
	})

	t.Run("acked message replayed", func(t *testing.T) {
		s := send(e2e.Transactional, e2e.Receipt, "once only")
		k := msgKey(s.MessageID)
		wrap, _ := rdb.Get(ctx, k+":"+phone.ID()).Result()
		if m, err := next(t, phone); err != nil || string(m.Body) != "once only" {
			t.Fatalf("first delivery: %v, %v", m, err)
		}
		if err := phone.Ack(ctx, s.MessageID); err != nil {
			t.Fatal(err)
		}
		// Put it back as if it had never been delivered.
		uid, _, _ := strings.Cut(s.MessageID, ".")
		rdb.Set(ctx, k+":"+phone.ID(), wrap, time.Hour)
		rdb.HSet(ctx, k, "s:"+phone.ID(), "q")
		rdb.ZAdd(ctx, "hr:{u:"+uid+"}:mb:"+phone.ID(), redis.Z{Score: 1e12, Member: s.MessageID})
		m, err := next(t, phone)
		rejected(t, m, err, client.ErrReplay)
	})
}
