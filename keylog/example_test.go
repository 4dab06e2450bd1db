package keylog_test

import (
	"bytes"
	"fmt"
	"time"

	"github.com/heraldhq/herald/keylog"
)

// A device checks a key it was given by a lookup: the checkpoint against the one it
// kept, then the key's leaf against the checkpoint, then that the leaf names the key.
// Here the log holds one leaf, whose proof is empty.
func Example() {
	skey, vkey, _ := keylog.GenerateKey("herald.example/keylog")

	// The gateway: the log key from its configuration, one event appended.
	signer, _ := keylog.NewSigner(skey)
	deviceKey := bytes.Repeat([]byte{7}, 32)
	leaf, _ := keylog.Encode(keylog.Event{Kind: keylog.DeviceKeyAdded, Owner: "abcdefghijklmnopqrstuvwxyz",
		ID: "phone_1", Algorithm: "x25519", PublicKey: deviceKey, Time: time.UnixMilli(1_767_225_600_000)})
	checkpoint, _ := signer.Sign(1, keylog.LeafHash(leaf))

	// The device: the published verifier key, and the checkpoint it kept (none yet).
	v, _ := keylog.NewVerifier(vkey, nil)
	c, err := v.Update(checkpoint.Note, nil)
	if err != nil {
		fmt.Println("refuse the log:", err)
		return
	}
	e, err := v.VerifyInclusion(c, 0, leaf, nil)
	if err != nil || !bytes.Equal(e.PublicKey, deviceKey) {
		fmt.Println("refuse the key:", err)
		return
	}
	fmt.Println(e.Kind, e.ID, "in the log at size", c.Size)
	// Output: device-key-added phone_1 in the log at size 1
}
