// Package delivery is everything between an admitted message and a person's device:
// device registration and tokens, per-device mailboxes, the Receive stream woken by
// Redis pub/sub, acknowledgements, expiry, and the status events businesses read.
//
// Guarantees:
//   - A message admitted for a device stays in its mailbox until the device acks it or
//     it expires; every Receive sends what is queued, so delivery is at least once. A
//     message that cannot be delivered (its sealed body is gone) is reported expired
//     on the device rather than holding up the rest.
//   - Each state change of a message on a device (queued, delivered, read, expired)
//     happens once, atomically with the status event that reports it; status events
//     reach the business at least once, in a stream it can resume by cursor.
//   - One pub/sub connection per gateway, whatever the number of connected devices.
package delivery
