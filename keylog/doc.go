// Package keylog is Herald's auditable key log (key transparency): every event of a
// device key or a business key is a leaf of one append-only Merkle tree, the gateway
// signs checkpoints of that tree, and the SDKs trust a key only when the log proves
// it holds it. This package is the part everyone shares — the leaf and checkpoint
// formats, the log key, and the Verifier the SDKs run — and has no Redis in it; the
// log itself, kept in Redis, is package keylog/store.
//
// Its anchors are Go's checksum database (a signed tree head that clients remember
// and check every newer one against; the signed-note format is its format) and
// WhatsApp's auditable key directory (every key a client encrypts to is published
// where its owner and auditors can see it).
//
// # How
//
//   - A gateway appends an Event for every device key added, approved, removed or
//     rotated, and every business key added, rotated, replaced or retired (Encode
//     gives its leaf). All gateways append to one sequence.
//   - The tree is RFC 6962's: a leaf hashes to SHA-256(0x00 ‖ leaf), an inner node to
//     SHA-256(0x01 ‖ left ‖ right), so no node passes for a leaf; the proofs are RFC
//     6962's audit paths and consistency proofs (github.com/transparency-dev/merkle).
//   - The gateway signs a Checkpoint (origin, size, root) with the log key from its
//     configuration (Signer); the log's verifier key is published and built into the
//     SDKs (NewVerifier).
//   - A lookup of a recipient gives each device key with its leaf, leaf index and
//     inclusion proof against a checkpoint; a delivery carries the same for the
//     business key that signed it.
//   - The SDK's Verifier accepts a checkpoint only if the log's key signed it and it
//     is consistent with the newest one the Verifier accepted before (Update, with
//     the consistency proof between the two); it keeps that newest one, which the SDK
//     stores across restarts. It then checks each key's leaf against the checkpoint
//     (VerifyInclusion) and compares the Event with the key it was given, refusing a
//     key that is not in the log.
//
// # Invariants
//
//  1. Leaf i, once appended, never changes, and the tree's size only grows. All
//     gateways append to one sequence: one Redis script gives each leaf its index, so
//     concurrent appends never fork the tree (keylog/store).
//  2. Every checkpoint the log signs commits to a prefix of that one sequence: between
//     any two there is a consistency proof.
//  3. One event has one leaf and one leaf one event (Encode(Parse(b)) == b). A device
//     event names its owner by uid, the HMAC of the phone number: Encode refuses
//     anything else, so no phone number enters the log.
//
// # What the log proves
//
//   - That a key a device accepts was published, in this log, at a position: the leaf
//     is at that index of the tree the signed checkpoint commits to. Anyone shown the
//     same checkpoint sees the same key at the same position.
//   - That the history is append-only, to anyone who kept a checkpoint: a later
//     checkpoint verifies only if it extends the kept one, so no leaf before it was
//     changed, removed or reordered. A log that rewrote a leaf cannot make the proof;
//     two checkpoints of the same size with different roots are evidence, signed by
//     the log's own key, that it did (ConsistencyError holds both).
//   - That the log is what its leaves say: an auditor who reads every leaf
//     (store.Log.Leaves) recomputes the root of a checkpoint, and can list every key
//     ever published for a uid or a business.
//
// # What it cannot prove
//
//   - That everyone sees the same log. The operator can sign two logs and show one to
//     each person (a split view): each is consistent on its own. Only comparing
//     checkpoints across people reveals it — a witness that cosigns the checkpoints it
//     has checked (the notes carry cosignatures; a Verifier skips signatures it has no
//     key for), or clients gossiping theirs. Until then the log guards each person
//     against a rewritten history, not against being shown a history of their own.
//   - That a key is the person's. The log shows a key was published for a uid and a
//     device, not who holds its private half. The operator, or whoever controls a
//     gateway, can still append a key of its own for anyone — but cannot hide that it
//     did: the event stays in the log for good, where the owner's devices, watching
//     the log for their uid, and auditors find it.
//   - That a key is still current. An inclusion proof shows that a key was published,
//     not that no later event removed or replaced it: a lookup could offer a key that
//     a later leaf retired. Knowing the latest key per owner needs either the owner's
//     whole history from the log, or a verifiable map (as in WhatsApp's directory),
//     which this log is not.
//   - Anything to a Verifier that has never seen a checkpoint: the first one is taken
//     on trust. Ship SDKs with a recent checkpoint, or rely on a witness.
//   - When. An event's time is the gateway's clock, as the gateway wrote it.
//
// One operational consequence: the log lives in Redis, and a Redis that loses writes
// it acknowledged (an asynchronous replica promoted, no fsync) loses leaves that
// checkpoints already covered. New leaves then take their indexes, which is
// indistinguishable from a rewritten history: every device that saw a lost checkpoint
// refuses the log from then on. Run the log's Redis with appendfsync always, and know
// that a failover to a replica that had not yet received every write does the same
// harm (Append does not WAIT for replicas).
package keylog
