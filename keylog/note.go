package keylog

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"
)

// Checkpoints are signed notes as Go's checksum database and the C2SP signed-note
// specification write them, with their Ed25519 keys and key texts, so that sumdb
// tooling (golang.org/x/mod/sumdb/note) and transparency witnesses read them as they
// are. A note is its text, a blank line, and one line per signature:
//
//	— <key name> <base64 of: 4-byte key hash, 64-byte Ed25519 signature of the text>
//
// The key hash is the first 4 bytes of SHA-256(name, "\n", 0x01, public key); 0x01 is
// the algorithm byte of Ed25519. The key texts are
//
//	verifier key (published):        <name>+<key hash, 8 hex digits>+<base64(0x01, public key)>
//	signer key (the gateway's secret): PRIVATE+KEY+<name>+<key hash>+<base64(0x01, seed)>
//
// A note may carry other signatures than the log's (a witness's cosignature); a
// Verifier ignores those it has no key for.

const (
	algEd25519 = 0x01
	// sigPrefix starts every signature line: an em dash and a space.
	sigPrefix = "\u2014 "
	// maxNote bounds the notes Open reads; a checkpoint with a few cosignatures is
	// well under 1 KiB.
	maxNote = 64 << 10
	// maxSignatures bounds the signature lines Open reads.
	maxSignatures = 100
)

// GenerateKey makes a new log key named name (the log's origin, for example
// "herald.example.com/keylog"). skey is the signer key text for the gateways'
// configuration and must stay secret; vkey is the verifier key text to publish and to
// build the SDKs with.
func GenerateKey(name string) (skey, vkey string, err error) {
	if err := checkKeyName(name); err != nil {
		return "", "", err
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return "", "", fmt.Errorf("generate log key: %w", err)
	}
	h := keyHash(name, pub)
	skey = "PRIVATE+KEY+" + name + "+" + hashText(h) + "+" + keyText(priv.Seed())
	vkey = name + "+" + hashText(h) + "+" + keyText(pub)
	return skey, vkey, nil
}

// Signer signs the log's checkpoints. It is safe for concurrent use.
type Signer struct {
	name string
	hash uint32
	priv ed25519.PrivateKey
}

// NewSigner returns the signer for signer key text skey, as GenerateKey made it.
func NewSigner(skey string) (*Signer, error) {
	f := strings.SplitN(skey, "+", 5)
	if len(f) != 5 || f[0] != "PRIVATE" || f[1] != "KEY" {
		return nil, malformed("signer key is not PRIVATE+KEY+<name>+<hash>+<key>")
	}
	name, hash, seed, err := parseKeyText(f[2], f[3], f[4], ed25519.SeedSize)
	if err != nil {
		return nil, fmt.Errorf("signer key: %w", err)
	}
	priv := ed25519.NewKeyFromSeed(seed)
	if keyHash(name, priv.Public().(ed25519.PublicKey)) != hash {
		return nil, malformed("signer key's hash does not match its key")
	}
	return &Signer{name: name, hash: hash, priv: priv}, nil
}

// Name is the key's name, which is the log's origin: the first line of every
// checkpoint it signs.
func (s *Signer) Name() string { return s.name }

// VerifierKey is the verifier key text of s, the one to publish.
func (s *Signer) VerifierKey() string {
	return s.name + "+" + hashText(s.hash) + "+" + keyText(s.priv.Public().(ed25519.PublicKey))
}

// Sign returns the checkpoint of the tree of size size with root hash root, signed.
// Ed25519 signatures are deterministic: every gateway signing the same tree writes
// the same note.
func (s *Signer) Sign(size uint64, root []byte) (Signed, error) {
	c := Checkpoint{Origin: s.name, Size: size, Root: root}
	text, err := c.marshal()
	if err != nil {
		return Signed{}, err
	}
	sig := binary.BigEndian.AppendUint32(make([]byte, 0, 4+ed25519.SignatureSize), s.hash)
	sig = append(sig, ed25519.Sign(s.priv, text)...)
	note := make([]byte, 0, len(text)+len(s.name)+100)
	note = append(note, text...)
	note = append(note, '\n')
	note = append(note, sigPrefix...)
	note = append(note, s.name...)
	note = append(note, ' ')
	note = base64.StdEncoding.AppendEncode(note, sig)
	note = append(note, '\n')
	return Signed{Checkpoint: c, Note: note}, nil
}

// verifierKey is a parsed verifier key text.
type verifierKey struct {
	name string
	hash uint32
	pub  ed25519.PublicKey
}

func parseVerifierKey(vkey string) (verifierKey, error) {
	f := strings.SplitN(vkey, "+", 3)
	if len(f) != 3 {
		return verifierKey{}, malformed("verifier key is not <name>+<hash>+<key>")
	}
	name, hash, pub, err := parseKeyText(f[0], f[1], f[2], ed25519.PublicKeySize)
	if err != nil {
		return verifierKey{}, fmt.Errorf("verifier key: %w", err)
	}
	if keyHash(name, pub) != hash {
		return verifierKey{}, malformed("verifier key's hash does not match its key")
	}
	return verifierKey{name: name, hash: hash, pub: pub}, nil
}

// open checks that note carries a valid signature by k and returns its text (which
// ends with a newline). Signatures by other keys are skipped.
func (k verifierKey) open(note []byte) ([]byte, error) {
	if len(note) > maxNote {
		return nil, malformed("note of %d bytes", len(note))
	}
	i := bytes.Index(note, []byte("\n\n"))
	if i < 0 || !bytes.HasSuffix(note, []byte("\n")) {
		return nil, malformed("note has no signature block")
	}
	text, sigs := note[:i+1], note[i+2:]
	lines := bytes.SplitAfter(sigs, []byte("\n"))
	lines = lines[:len(lines)-1] // after the final newline: empty
	if len(lines) == 0 || len(lines) > maxSignatures {
		return nil, malformed("note has %d signature lines", len(lines))
	}
	for _, line := range lines {
		rest, ok := bytes.CutPrefix(line, []byte(sigPrefix))
		name, b64, ok2 := bytes.Cut(bytes.TrimSuffix(rest, []byte("\n")), []byte(" "))
		if !ok || !ok2 {
			return nil, malformed("signature line %q", line)
		}
		sig, err := base64.StdEncoding.DecodeString(string(b64))
		if err != nil || len(sig) < 4 {
			return nil, malformed("signature line %q", line)
		}
		if string(name) != k.name || binary.BigEndian.Uint32(sig) != k.hash {
			continue // another key's signature, a witness's perhaps
		}
		if !ed25519.Verify(k.pub, text, sig[4:]) {
			return nil, fmt.Errorf("%w: the signature by %s does not match the note", ErrBadSignature, k.name)
		}
		return text, nil
	}
	return nil, fmt.Errorf("%w: the note is not signed by %s+%s", ErrBadSignature, k.name, hashText(k.hash))
}

func parseKeyText(name, hash, key string, size int) (string, uint32, []byte, error) {
	if err := checkKeyName(name); err != nil {
		return "", 0, nil, err
	}
	h, err := strconv.ParseUint(hash, 16, 32)
	if err != nil || len(hash) != 8 {
		return "", 0, nil, malformed("key hash %q is not 8 hex digits", hash)
	}
	b, err := base64.StdEncoding.DecodeString(key)
	if err != nil || len(b) != 1+size || b[0] != algEd25519 {
		return "", 0, nil, malformed("key is not base64 of 0x01 and %d bytes of Ed25519 key", size)
	}
	return name, uint32(h), b[1:], nil
}

// checkKeyName refuses names that the key texts and signature lines cannot carry.
func checkKeyName(name string) error {
	if name == "" || len(name) > maxNameLength {
		return malformed("key name of %d bytes (want 1 to %d)", len(name), maxNameLength)
	}
	for i := range len(name) {
		if c := name[i]; c < 0x21 || c > 0x7e || c == '+' {
			return malformed("key name has byte %#x (want printable ASCII without spaces or +)", c)
		}
	}
	return nil
}

func keyHash(name string, pub ed25519.PublicKey) uint32 {
	h := sha256.New()
	h.Write([]byte(name))
	h.Write([]byte{'\n', algEd25519})
	h.Write(pub)
	return binary.BigEndian.Uint32(h.Sum(nil))
}

func hashText(h uint32) string { return fmt.Sprintf("%08x", h) }

func keyText(key []byte) string {
	return base64.StdEncoding.EncodeToString(append([]byte{algEd25519}, key...))
}
