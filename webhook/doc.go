// Package webhook delivers a business's status events to its HTTPS endpoint, signed,
// so that a business learns of deliveries without holding StreamStatus open.
//
// A business registers one URL (Store.Set) and gets a secret. Every status event of
// its stream is POSTed to the URL as one JSON object, with the header
//
//	Herald-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>
//
// (two v1 values for a day after the secret was rotated, one per secret). A receiver
// checks it with Verify, or in a few lines of its own: recompute the HMAC over the
// timestamp, a dot and the raw body, compare in constant time, and refuse a timestamp
// far from now.
//
// Guarantees:
//   - At least once: an event is sent until the endpoint answers 2xx, and the stream
//     position advances only then. Each event has a stable id (its position in the
//     stream), so a receiver drops repeats by id.
//   - In order: events go out in stream order, one at a time; a message's events are
//     in the order they happened.
//   - Bounded: after failures in a row for longer than the retry window (24 h by
//     default) delivery is given up, visibly to the operator (Store.Get), until the
//     business sets its webhook again. Retries back off exponentially, from a second
//     to an hour.
//   - One sender: every gateway runs a Dispatcher, and a lease per business (held
//     while delivering, renewed, taken over when it lapses) makes one of them deliver.
//     A gateway that dies mid-POST leaves the event to be sent again by the next.
//
// Webhooks reach only public addresses unless the Dispatcher is told otherwise
// (WithPrivateAddresses): a business must not make the gateway call into the
// operator's own network.
package webhook
