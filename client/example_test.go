package client_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"os"
	"time"

	"github.com/heraldhq/herald/client"
	"github.com/heraldhq/herald/e2e"
	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

// What the examples share: a connection to a gateway, a business and a device. The
// first two examples show how each is made.
var (
	ctx   = context.Background()
	conn  *grpc.ClientConn
	acme  *client.Business
	phone *client.Device
)

// A business dials the gateway, loads its signing key and sends as itself.
func ExampleNewBusiness() {
	conn, err := grpc.NewClient("herald.example.com:443", grpc.WithTransportCredentials(credentials.NewClientTLSFromCert(nil, "")))
	if err != nil {
		log.Fatal(err)
	}
	seed, err := os.ReadFile("/etc/acme/herald-signing.key") // e2e.SigningKey.MarshalPrivate
	if err != nil {
		log.Fatal(err)
	}
	signer, err := e2e.ParseSigningKey(seed)
	if err != nil {
		log.Fatal(err)
	}
	acme := client.NewBusiness(conn, "biz_acme", os.Getenv("HERALD_API_KEY"), signer,
		client.WithRetry(6, 250*time.Millisecond),
		client.WithLogger(slog.Default()))
	fmt.Println("sending as", acme.ID())
}

// The first time, a business generates its signing key, keeps the private half and
// registers the public half; devices pin it with the first message.
func ExampleBusiness_RegisterSigningKey() {
	signer, err := e2e.GenerateSigningKey()
	if err != nil {
		log.Fatal(err)
	}
	if err := os.WriteFile("herald-signing.key", signer.MarshalPrivate(), 0o600); err != nil {
		log.Fatal(err)
	}
	acme := client.NewBusiness(conn, "biz_acme", os.Getenv("HERALD_API_KEY"), signer)
	if err := acme.RegisterSigningKey(ctx); err != nil {
		log.Fatal(err)
	}
}

// A business moves to a new signing key: it saves the new key first, then has the
// current key endorse it. Devices that trust the current key trust the new one on that
// endorsement, without asking their person; messages signed with the old key still
// open. A business that lost its key cannot do this: it asks the operator to replace
// the key, which every device reports as a key change.
func ExampleBusiness_RotateSigningKey() {
	next, err := e2e.GenerateSigningKey()
	if err != nil {
		log.Fatal(err)
	}
	if err := os.WriteFile("herald-signing.key.next", next.MarshalPrivate(), 0o600); err != nil {
		log.Fatal(err)
	}
	old := acme.SigningKeyID()
	if err := acme.RotateSigningKey(ctx, next); err != nil {
		log.Fatal(err)
	}
	if err := os.Rename("herald-signing.key.next", "herald-signing.key"); err != nil {
		log.Fatal(err)
	}
	// Keep the old key's id: once nothing signed with it can still be queued (30 days
	// at most), or at once if it may have leaked, acme.RetireSigningKey(ctx, old).
	fmt.Println("rotated away from", old)
}

// A receipt, with an idempotency key derived from the order so that a job that runs
// twice delivers it once.
func ExampleBusiness_Send() {
	sent, err := acme.Send(ctx, "+14155550123", e2e.Transactional, e2e.Receipt, []byte("1 latte, 4.50 EUR"),
		client.WithClientMessageID("order-1234:receipt"))
	var rejected *client.RejectedError
	switch {
	case errors.As(err, &rejected):
		fmt.Println("not delivered:", rejected.Outcome) // e.g. OUTCOME_BLOCKED
	case err != nil:
		log.Fatal(err)
	default:
		fmt.Println("accepted as", sent.MessageID, "for", len(sent.DeviceIDs), "devices")
	}
}

// An offer to everyone who opted in: one seal, batches of up to 1000.
func ExampleBusiness_Broadcast() {
	subscribers := []string{"+14155550123", "+442079460018"}
	results, err := acme.Broadcast(ctx, subscribers, e2e.Marketing, e2e.Offer, []byte("2 for 1 today"),
		client.WithClientMessageID("promo-2026-11-25"), client.WithTTL(12*time.Hour))
	if err != nil {
		log.Print(err) // results still say what was done
	}
	for _, r := range results {
		if r.Err != nil {
			fmt.Println(r.Recipient, r.Err)
		}
	}
}

// A worker that follows delivery statuses and survives restarts: it saves the cursor
// of each event it handled and resumes from it.
func ExampleBusiness_Statuses() {
	saved, _ := os.ReadFile("status.cursor")
	acme := client.NewBusiness(conn, "biz_acme", os.Getenv("HERALD_API_KEY"), nil, client.WithCursor(string(saved)))
	for e, err := range acme.Statuses(ctx) {
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(e.ClientMessageID, e.Status, e.DeviceID)
		os.WriteFile("status.cursor", []byte(e.Cursor), 0o600)
	}
}

// Whether a message would be admitted, before composing it.
func ExampleBusiness_Lookup() {
	devices, err := acme.Lookup(ctx, "+14155550123", e2e.Marketing)
	if err != nil {
		fmt.Println("would be rejected:", err)
		return
	}
	fmt.Println(len(devices), "devices")
}

// A consent the business collected at checkout.
func ExampleBusiness_RecordConsent() {
	r, err := acme.RecordConsent(ctx, "+14155550123", e2e.Marketing, client.OptedIn,
		client.Evidence{Source: "checkout-form", CollectedTime: time.Now(), Reference: "order-1234"})
	if err != nil {
		log.Fatal(err)
	}
	if r.OverriddenByRecipient {
		fmt.Println("the person's own choice governs:", r.Effective)
	}
}

// A new device registers with the code texted to the person and saves its state.
func ExampleRegister() {
	phone, err := client.Register(ctx, conn, "+14155550123", "12345678", e2e.MLKEM768X25519)
	if err != nil {
		log.Fatal(err)
	}
	state, err := phone.MarshalState()
	if err != nil {
		log.Fatal(err)
	}
	if err := os.WriteFile("device.state", state, 0o600); err != nil {
		log.Fatal(err)
	}
	fmt.Println("registered", phone.ID())
}

// A device restored from its saved state.
func ExampleLoadDevice() {
	state, err := os.ReadFile("device.state")
	if err != nil {
		log.Fatal(err)
	}
	phone, err := client.LoadDevice(conn, state)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("device", phone.ID(), "key", phone.KeyID())
}

// Saving the state after what changes it: here, after acknowledging.
func ExampleDevice_MarshalState() {
	if err := phone.Ack(ctx, "msg-id"); err != nil {
		log.Fatal(err)
	}
	state, err := phone.MarshalState()
	if err != nil {
		log.Fatal(err)
	}
	os.WriteFile("device.state", state, 0o600)
}

// Reading messages as they come, acknowledging each once shown.
func ExampleDevice_Receive() {
	for m, err := range phone.Receive(ctx) {
		var changed *client.KeyChangedError
		var rejected *client.RejectedDeliveryError
		switch {
		case errors.As(err, &changed):
			fmt.Printf("%s has a new key; ask them before trusting it\n", changed.BusinessID)
			continue
		case errors.As(err, &rejected):
			fmt.Println("dropped a forged or damaged message:", rejected.Reason)
			continue
		case err != nil:
			log.Fatal(err)
		}
		fmt.Printf("%s (%s): %s\n", m.BusinessName, m.Kind, m.Body)
		if err := phone.Ack(ctx, m.ID); err != nil {
			log.Fatal(err)
		}
	}
}

// A delivery obtained some other way (a push payload) goes through the same checks.
func ExampleDevice_Open() {
	var d *heraldv1.Delivery // e.g. unmarshalled from a push notification
	m, err := phone.Open(d)
	if err != nil {
		log.Print(err)
		return
	}
	fmt.Printf("%s\n", m.Body)
}

// Marking a message read tells the business STATUS_READ.
func ExampleDevice_Read() {
	if err := phone.Read(ctx, "msg-id"); err != nil {
		log.Fatal(err)
	}
}

// Acknowledging as delivered tells the business STATUS_DELIVERED.
func ExampleDevice_Ack() {
	if err := phone.Ack(ctx, "msg-1", "msg-2"); err != nil {
		log.Fatal(err)
	}
}

// No more messages from a business, of any kind.
func ExampleDevice_Block() {
	if err := phone.Block(ctx, "biz_acme"); err != nil {
		log.Fatal(err)
	}
}

// Lifting a block.
func ExampleDevice_Unblock() {
	if err := phone.Unblock(ctx, "biz_acme"); err != nil {
		log.Fatal(err)
	}
}

// Opting in to a business's offers.
func ExampleDevice_SetConsent() {
	if err := phone.SetConsent(ctx, "biz_acme", e2e.Marketing, client.OptedIn); err != nil {
		log.Fatal(err)
	}
}

// The person's businesses, for a settings screen.
func ExampleDevice_Preferences() {
	prefs, err := phone.Preferences(ctx)
	if err != nil {
		log.Fatal(err)
	}
	for _, p := range prefs {
		fmt.Println(p.DisplayName, "blocked:", p.Blocked)
	}
}

// Reporting an offer dressed as a receipt.
func ExampleDevice_ReportSpam() {
	if err := phone.ReportSpam(ctx, "msg-id", client.ReasonMislabeledCategory); err != nil {
		log.Fatal(err)
	}
}

// A new key pair, e.g. yearly; save the state at once.
func ExampleDevice_RotateKey() {
	if err := phone.RotateKey(ctx); err != nil {
		log.Fatal(err)
	}
	state, err := phone.MarshalState()
	if err != nil {
		log.Fatal(err)
	}
	os.WriteFile("device.state", state, 0o600)
}

// After the person confirmed with the business that it changed its key.
func ExampleDevice_TrustKey() {
	for _, err := range phone.Receive(ctx) {
		var changed *client.KeyChangedError
		if errors.As(err, &changed) {
			if err := phone.TrustKey(changed.BusinessID, changed.Offered); err != nil {
				log.Fatal(err)
			}
			break // Receive again to read the message
		}
	}
}

// A settings screen shows the key a business's messages are checked against, for the
// person to compare with what the business publishes.
func ExampleDevice_PinnedKey() {
	if key := phone.PinnedKey("biz_acme"); key != nil {
		fmt.Printf("Acme's key: %x\n", key)
	}
}

// Saving where a status worker got to, at shutdown.
func ExampleBusiness_Cursor() {
	os.WriteFile("status.cursor", []byte(acme.Cursor()), 0o600)
}
