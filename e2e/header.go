package e2e

import (
	"encoding/binary"
	"strconv"
	"time"
)

// Category is what a message is for. Its values are those of the herald.v1.Category
// enum, so e2e.Category(m.GetCategory()) converts.
type Category uint8

// Categories, numbered as in herald.v1.Category.
const (
	Transactional Category = 1
	Marketing     Category = 2
)

// String returns the category's name, or its number when unknown.
func (c Category) String() string {
	switch c {
	case Transactional:
		return "transactional"
	case Marketing:
		return "marketing"
	}
	return strconv.Itoa(int(c))
}

// Kind narrows a category. Its values are those of the herald.v1.Kind enum, so
// e2e.Kind(m.GetKind()) converts. Which kinds belong to which category is the gateway's
// policy, not this package's: Seal binds whatever it is given.
type Kind uint8

// Kinds, numbered as in herald.v1.Kind.
const (
	Receipt        Kind = 1
	Reservation    Kind = 2
	DeliveryStatus Kind = 3
	AccountUpdate  Kind = 4
	Offer          Kind = 5
)

// String returns the kind's name, or its number when unknown.
func (k Kind) String() string {
	switch k {
	case Receipt:
		return "receipt"
	case Reservation:
		return "reservation"
	case DeliveryStatus:
		return "delivery_status"
	case AccountUpdate:
		return "account_update"
	case Offer:
		return "offer"
	}
	return strconv.Itoa(int(k))
}

// Header is the routing metadata of a message: what Herald needs to route and police it,
// and what the device must be able to prove it was told. Seal binds it into the body
// and every wrap and signs it; Open compares it with what the delivery claims.
//
// BusinessID, ClientMessageID and SentTime together identify a message for good: a
// device SDK that remembers the (BusinessID, ClientMessageID) pairs it has shown, and
// refuses those whose SentTime is older than that memory, rejects replays.
type Header struct {
	// BusinessID is the sending business, 1 to 255 bytes.
	BusinessID string
	// Category is what the message is for; not zero.
	Category Category
	// Kind narrows Category; not zero.
	Kind Kind
	// ClientMessageID is the business's idempotency key for the message, 1 to 255 bytes.
	ClientMessageID string
	// SentTime is when the business sealed the message, by its clock. It is kept to the
	// millisecond (Unix milliseconds on the wire); Seal refuses the zero time.
	SentTime time.Time
}

// maxField is the longest string field: its length is one byte on the wire.
const maxField = 255

// validate reports why h cannot be sealed, wrapping ErrInvalidHeader.
func (h Header) validate() error {
	switch {
	case h.BusinessID == "" || len(h.BusinessID) > maxField:
		return invalidHeader("business id must be 1 to 255 bytes, is %d", len(h.BusinessID))
	case h.Category == 0:
		return invalidHeader("category is unset")
	case h.Kind == 0:
		return invalidHeader("kind is unset")
	case h.ClientMessageID == "" || len(h.ClientMessageID) > maxField:
		return invalidHeader("client message id must be 1 to 255 bytes, is %d", len(h.ClientMessageID))
	case h.SentTime.IsZero():
		return invalidHeader("sent time is unset")
	}
	return nil
}

// appendHeader appends h's encoding, as documented in the package doc, to b.
func appendHeader(b []byte, h Header) []byte {
	b = appendString(b, h.BusinessID)
	b = append(b, byte(h.Category), byte(h.Kind))
	b = appendString(b, h.ClientMessageID)
	return binary.BigEndian.AppendUint64(b, uint64(h.SentTime.UnixMilli()))
}

// readHeader reads a header encoded by appendHeader. Decoding is strict: whatever Seal
// would refuse is malformed, so every header has exactly one encoding.
func readHeader(r *reader) (Header, error) {
	var h Header
	h.BusinessID = r.string()
	h.Category = Category(r.byte())
	h.Kind = Kind(r.byte())
	h.ClientMessageID = r.string()
	ms := int64(binary.BigEndian.Uint64(r.bytes(8)))
	if r.short {
		return Header{}, malformed("header is truncated")
	}
	h.SentTime = time.UnixMilli(ms)
	if err := h.validate(); err != nil {
		return Header{}, malformed("header: %v", err)
	}
	return h, nil
}

// match compares the sealed header h with what the delivery claims. A zero
// expect.SentTime is not compared: Herald's Delivery carries the time it admitted the
// message, not the time the business sealed it.
func (h Header) match(expect Header) error {
	mismatch := func(field, sealed, delivered string) error {
		return &HeaderMismatchError{Field: field, Sealed: sealed, Delivered: delivered}
	}
	switch {
	case h.BusinessID != expect.BusinessID:
		return mismatch("business_id", h.BusinessID, expect.BusinessID)
	case h.Category != expect.Category:
		return mismatch("category", h.Category.String(), expect.Category.String())
	case h.Kind != expect.Kind:
		return mismatch("kind", h.Kind.String(), expect.Kind.String())
	case h.ClientMessageID != expect.ClientMessageID:
		return mismatch("client_message_id", h.ClientMessageID, expect.ClientMessageID)
	case !expect.SentTime.IsZero() && h.SentTime.UnixMilli() != expect.SentTime.UnixMilli():
		return mismatch("sent_time", formatTime(h.SentTime), formatTime(expect.SentTime))
	}
	return nil
}

func formatTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }
