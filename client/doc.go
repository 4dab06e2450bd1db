// Package client is the Go SDK of Herald, for both ends of a message: a business that
// sends (Business) and a person's device that receives (Device). Both speak to a
// gateway over any gRPC connection the caller dials, and both keep the end-to-end
// encryption (package e2e) out of the caller's way: the gateway carries only sealed
// envelopes and can read none of them.
//
// # What a Business guarantees
//
//   - Send and Broadcast seal with e2e before anything leaves the process; a broadcast
//     seals one body for every device of every recipient, and each device gets only
//     its own small wrap.
//   - Every message carries an idempotency key (client message id). Retries after
//     UNAVAILABLE or RESOURCE_EXHAUSTED, and the one resend after STALE_DEVICES,
//     reuse it, so a message is never delivered twice however often it is retried.
//   - Waits honour the gateway: a google.rpc.RetryInfo or a result's retry_after is
//     never undercut, and a wait that would outlast the context's deadline is not
//     started: the call returns the typed error at once instead.
//   - Statuses resumes from the last cursor it delivered, so no event is lost or
//     repeated across reconnections.
//   - Its signing key changes only by RotateSigningKey, which has the current key
//     endorse the next: a Business never replaces a key it does not hold.
//
// # What a Device guarantees
//
//   - Its private keys are generated here and never leave the Device, except inside
//     MarshalState, which is the device's own storage.
//   - A message is returned (by Open or Receive) only if its envelope opens with one
//     of the device's keys, is signed by a key the device trusts for its business (the
//     one it pinned on first use, or one that a chain of endorsements leads to from a
//     trusted key), carries exactly the routing metadata the delivery claims, and was
//     not accepted and acknowledged before.
//   - A business key that no trusted key endorsed is never accepted silently: it is a
//     *KeyChangedError until the caller calls TrustKey. A rotation the old key
//     endorsed (Business.RotateSigningKey) is followed without asking, and what the
//     old key signed still opens for RetiredKeyRetention.
//
// # Errors
//
// Every error a call returns can be inspected with errors.As: *RejectedError (a policy
// outcome: blocked, opted out, ...), *RateLimitedError, *InvalidArgumentError,
// *UnavailableError and *StatusError (any other gRPC status) on the business side;
// *RejectedDeliveryError and *KeyChangedError on the device side. Those that come from
// a gRPC status wrap it, so status.Code(err) still works. Context cancellation is
// returned as the context's error.
package client
