// Package e2e seals one message from a business to each of a person's devices, so that
// only those devices can read it, each can prove which business sent it and how it was
// labelled, and Herald, which carries it, can read neither.
//
// # The idea
//
// A device generates its key pair (GenerateDeviceKey) and registers the public half. A
// business, holding an Ed25519 signing key (GenerateSigningKey) whose public half its
// customers' devices trust, seals a message with Seal:
//
//   - the body is encrypted once, under a fresh random 32-byte content key;
//   - the content key is sealed to each device's public key with HPKE (RFC 9180), one
//     small "wrap" per device; a broadcast of one body to many devices costs one body
//     plus one wrap per device;
//   - the routing metadata (Header: business id, category, kind, client message id,
//     send time) is the body's associated data, and each wrap's HPKE info binds the
//     whole body record and the device id;
//   - the business signs, for each device, the body record and that device's wrap.
//
// The device runs Open with the metadata its delivery claims. Open returns the
// plaintext only if the business signed this envelope for this device id and key, and
// the sealed header equals the delivered one; otherwise it returns an error that
// callers branch on with errors.Is: ErrNotForThisDevice, ErrBadSignature,
// ErrHeaderMismatch (errors.As gives a *HeaderMismatchError naming the field),
// ErrUnsupportedVersion, ErrUnsupportedAlgorithm, ErrMalformed.
//
// # Algorithms
//
// Device keys are HPKE base mode with HKDF-SHA256 and ChaCha20-Poly1305, and one of two
// KEMs, numbered as in herald.v1.KeyAlgorithm:
//
//	1  MLKEM768X25519  ML-KEM-768 + X25519 hybrid (X-Wing): post-quantum; the default
//	2  X25519          DHKEM(X25519, HKDF-SHA256): 32-byte keys, not post-quantum
//
// The body is encrypted with AES-256-GCM, with a random 12-byte nonce
// (cipher.NewGCMWithRandomNonce), under a key derived from the content key with
// HKDF-SHA256. Not ChaCha20-Poly1305, because the standard library offers it only
// inside HPKE, and HPKE cannot encrypt one body for many recipients; AES-GCM is in the
// standard library, FIPS 140-approved, and hardware-accelerated on the amd64 and arm64
// machines businesses and phones run on. Each content key encrypts exactly one body,
// so neither nonce reuse nor GCM's per-key limits can arise. AES-GCM does not commit to
// its key, so the body record carries a 32-byte commitment to the content key, derived
// from it with HKDF-SHA256; Open checks it. A signed body therefore decrypts to one
// plaintext on every device: a business cannot show two devices two messages under one
// signed body.
//
// Signatures are Ed25519 (RFC 8032), by the business.
//
// # Why one signature per device
//
// A device receives its own wrap, not the others'. Signing once per message would make
// each delivery carry what the signature covers for every other device (at least a
// device id and a 32-byte wrap hash each): for a broadcast to 1000 devices that is
// about 58 KB per delivery, more than the body, and it would tell every device who else
// received the message. Signing once per device costs one Ed25519 signature per wrap
// (about 21 µs, against 95 µs for an X25519 wrap and 180 µs for an X-Wing wrap; see
// BenchmarkPerDeviceCost) and 64 bytes per wrap, and a delivery carries nothing about
// other devices. The signature also covers the device id, so a business cannot be
// made to have "sent" a message to a device it did not address, even by a recipient
// that knows the content key and wraps it for someone else.
//
// # Wire format, version 1
//
// All integers are big-endian. A "string" is one length byte n (1 to 255) followed by n
// bytes. Every record starts with the version byte 0x01; a reader refuses any other
// with ErrUnsupportedVersion. Parsing is strict: trailing bytes, an empty string, a
// zero category or kind, or Go's zero time are malformed, as Seal never writes them.
//
// Body record (Sealed.Body), the same bytes for every device:
//
//	size  field
//	1     version, 0x01
//	1+b   business id, string
//	1     category (herald.v1.Category: 1 transactional, 2 marketing)
//	1     kind (herald.v1.Kind: 1 receipt, 2 reservation, 3 delivery status,
//	      4 account update, 5 offer)
//	1+c   client message id, string
//	8     send time, Unix milliseconds, two's complement
//	      -- the bytes above are the header: the body AEAD's associated data --
//	32    key commitment: HKDF-Expand(HKDF-Extract(salt: none, content key),
//	      "herald-e2e v1 body commitment", 32)
//	12    AES-256-GCM nonce, random
//	n     ciphertext of the plaintext, n = its length
//	16    AES-256-GCM tag
//
// The AES-256 key is HKDF-Expand(the same PRK, "herald-e2e v1 body key", 32).
//
// Wrap record (Sealed.Wraps[deviceID]), one per device:
//
//	size  field
//	1     version, 0x01
//	1     algorithm: 0x01 MLKEM768X25519, 0x02 X25519
//	1+d   device id, string
//	16    key id: SHA-256(device public key)[:16] (KeyID is its base32)
//	E     HPKE encapsulated key: 1120 bytes for 0x01, 32 for 0x02
//	48    HPKE ciphertext of the 32-byte content key, with its 16-byte tag
//	64    Ed25519 signature
//
// A wrap is 1251+d bytes for X-Wing and 163+d for X25519. The HPKE context is
// single-shot base mode (hpke.Seal) with
//
//	info = "herald-e2e v1 wrap" || 0x00 || SHA-256(body record) || device id (string)
//
// and the signature is over
//
//	"herald-e2e v1 signature" || 0x00 || SHA-256(body record) || SHA-256(wrap record
//	without its last 64 bytes)
//
// A business that rotates its signing key has its current key endorse the new one
// (EndorseSigningKey, VerifyEndorsement): an Ed25519 signature by the current key over
//
//	"herald-e2e v1 signing-key endorsement" || 0x00 || business id (string) ||
//	new public key (32 bytes)
//
// Envelope, what one device receives (Envelope.ciphertext in herald.v1, and
// Delivery.ciphertext); JoinEnvelope and SplitEnvelope convert between it and the parts:
//
//	size  field
//	1     version, 0x01
//	4     length L of the body record
//	L     body record
//	rest  wrap record
//
// Plaintexts of up to 63,442 bytes always fit herald.v1's 64 KiB envelope limit,
// whatever the algorithm and field lengths.
//
// Device private keys (MarshalPrivate, ParseDeviceKey) are the version byte, the
// algorithm byte and the 32-byte RFC 9180 SerializePrivateKey output. Signing keys are
// the 32-byte RFC 8032 seed.
//
// # Invariants
//
//   - Open returns a plaintext only if the business's key signed the body record and
//     this device's wrap record, the wrap names this device id and this key, and the
//     sealed header equals the one the delivery claims (send time only when claimed).
//   - Nothing can be relabelled: the header is inside the signed body record and is
//     the body's associated data; the device id is signed and in the wrap's HPKE info.
//     A wrap moved to another device, or a body swapped under a wrap, is refused.
//   - Open checks the signature before it uses the private key.
//   - Malformed input of any shape is an error, never a panic.
//
// # What is left to the caller
//
// Trust in the business's public key (how a device learns it for a business id) is
// the SDK's: package client pins the first key it sees and trusts a later one only on
// a chain of endorsements from a key it trusts. So is replay protection: the signed header's (BusinessID,
// ClientMessageID) identifies a message for good and SentTime dates it, so a device
// that remembers what it has shown and refuses what is older than its memory refuses
// replays. Herald's Delivery.sent_time is when the gateway admitted the message, not
// when the business sealed it; a device passes a zero SentTime to Open and reads the
// sealed one from the result. The header is readable without keys (Inspect), as the
// gateway already knows everything in it; the body and content key are not.
package e2e
