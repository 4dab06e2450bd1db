package e2e_test

import (
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/heraldhq/herald/e2e"
)

// A business seals a receipt for a person's two devices; each device opens its own
// envelope, and refuses one whose delivery relabels it.
func Example() {
	// On each device, once: generate a key, store MarshalPrivate, register PublicKey.
	phone, err := e2e.GenerateDeviceKey(e2e.MLKEM768X25519)
	if err != nil {
		log.Fatal(err)
	}
	laptop, err := e2e.GenerateDeviceKey(e2e.X25519)
	if err != nil {
		log.Fatal(err)
	}

	// At the business: its signing key, and the devices from LookupRecipient.
	business, err := e2e.GenerateSigningKey()
	if err != nil {
		log.Fatal(err)
	}
	h := e2e.Header{
		BusinessID:      "biz_pizzeria",
		Category:        e2e.Transactional,
		Kind:            e2e.Receipt,
		ClientMessageID: "order-1234:receipt",
		SentTime:        time.Now(),
	}
	sealed, err := e2e.Seal(business, h, []byte("1 margherita, 12.50 EUR"), []e2e.Recipient{
		{DeviceID: "dev_phone", PublicKey: phone.PublicKey(), Algorithm: phone.Algorithm()},
		{DeviceID: "dev_laptop", PublicKey: laptop.PublicKey(), Algorithm: laptop.Algorithm()},
	})
	if err != nil {
		log.Fatal(err)
	}
	envelope, _ := sealed.Envelope("dev_phone") // Envelope.ciphertext for dev_phone

	// On the phone: what the Delivery claims, and the business's trusted key.
	delivered := e2e.Header{
		BusinessID:      "biz_pizzeria",
		Category:        e2e.Transactional,
		Kind:            e2e.Receipt,
		ClientMessageID: "order-1234:receipt",
	}
	m, err := e2e.Open(phone, "dev_phone", delivered, business.PublicKey(), envelope)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s: %s\n", m.Header.Kind, m.Body)

	delivered.Category, delivered.Kind = e2e.Marketing, e2e.Offer
	_, err = e2e.Open(phone, "dev_phone", delivered, business.PublicKey(), envelope)
	var mismatch *e2e.HeaderMismatchError
	if errors.As(err, &mismatch) {
		fmt.Println("refused:", mismatch.Field, "was sealed as", mismatch.Sealed)
	}
	// Output:
	// receipt: 1 margherita, 12.50 EUR
	// refused: category was sealed as transactional
}

// A gateway that receives one envelope per device stores the body they share once.
func ExampleSplitEnvelope() {
	dev, _ := e2e.GenerateDeviceKey(e2e.X25519)
	business, _ := e2e.GenerateSigningKey()
	h := e2e.Header{BusinessID: "biz_1", Category: e2e.Transactional, Kind: e2e.DeliveryStatus, ClientMessageID: "parcel-9", SentTime: time.Now()}
	sealed, _ := e2e.Seal(business, h, []byte("out for delivery"), []e2e.Recipient{{DeviceID: "dev_1", PublicKey: dev.PublicKey(), Algorithm: dev.Algorithm()}})
	envelope, _ := sealed.Envelope("dev_1")

	body, wrap, err := e2e.SplitEnvelope(envelope)
	if err != nil {
		log.Fatal(err)
	}
	// ... store body once and wrap per device; at delivery:
	delivered := e2e.JoinEnvelope(body, wrap)

	m, err := e2e.Open(dev, "dev_1", e2e.Header{BusinessID: "biz_1", Category: e2e.Transactional, Kind: e2e.DeliveryStatus, ClientMessageID: "parcel-9"}, business.PublicKey(), delivered)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%d-byte wrap; %s\n", len(wrap), m.Body)
	// Output: 168-byte wrap; out for delivery
}
