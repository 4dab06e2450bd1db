package main

// key.go holds a business's signing key commands, on the SDK's client.Business (with
// the API key): rotating to a new key that the current one endorses, retiring an old
// one, and making a key for the operator to put in place of a lost one.

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	iofs "io/fs"
	"os"
	"path/filepath"

	"github.com/heraldhq/herald/client"
	"github.com/heraldhq/herald/e2e"
	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
)

// businessFlag defines --business.
func (c *cli) businessFlag(fs *flag.FlagSet) *string {
	return fs.String("business", c.cfg.getenv("HERALD_BUSINESS_ID"), "the business's `ID` (HERALD_BUSINESS_ID; required)")
}

func (c *cli) keyRotate(ctx context.Context, fs *flag.FlagSet, args []string) error {
	business := c.businessFlag(fs)
	pos, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	if err := wantArgs(fs, pos); err != nil {
		return err
	}
	if *business == "" {
		return usageErr(fs, "--business (or HERALD_BUSINESS_ID) is required")
	}
	cur, path, _, err := c.signingKey(*business, false)
	if err != nil {
		return fmt.Errorf("rotate: %w: a rotation needs the current key, to endorse the new one; a business that lost it "+
			"asks the operator to replace it (herald key new)", err)
	}
	// The new key is saved before the gateway hears of it, beside the current one; a
	// rotation that stopped half-way resumes with it.
	pending := path + ".next"
	next, err := loadOrMakeKey(pending)
	if err != nil {
		return err
	}
	conn, apiKey, err := c.businessConn(fs)
	if err != nil {
		return err
	}
	defer conn.Close()
	b := client.NewBusiness(conn, *business, apiKey, cur)
	old := b.SigningKeyID()
	if err := b.RotateSigningKey(ctx, next); err != nil {
		return err
	}
	if err := os.Rename(pending, path); err != nil {
		return fmt.Errorf("rotated to the key in %s but could not move it to %s (do that by hand; until then, sends from here fail): %w",
			pending, path, err)
	}
	if !c.cfg.JSON {
		fmt.Fprintf(c.stderr, "herald: business %s now signs with the key in %s; devices that trusted key %s trust it without asking. "+
			"Key %s still signs what is queued: once nothing it signed can be (30 days at most), or at once if it leaked, run: herald key retire %s\n",
			*business, path, old, old, old)
	}
	resp := &heraldv1.SetSigningKeyResponse{KeyId: b.SigningKeyID()}
	return c.result(resp, func(w io.Writer) { fmt.Fprintln(w, resp.GetKeyId()) })
}

// loadOrMakeKey reads the signing key in path, or makes one and saves it there.
func loadOrMakeKey(path string) (*e2e.SigningKey, error) {
	seed, err := os.ReadFile(path)
	if err == nil {
		key, err := e2e.ParseSigningKey(seed)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		return key, nil
	}
	if !errors.Is(err, iofs.ErrNotExist) {
		return nil, err
	}
	key, err := e2e.GenerateSigningKey()
	if err != nil {
		return nil, err
	}
	if err := writePrivate(filepath.Dir(path), path, key.MarshalPrivate(), false); errors.Is(err, iofs.ErrExist) {
		return loadOrMakeKey(path) // another herald made it meanwhile
	} else if err != nil {
		return nil, err
	}
	return key, nil
}

func (c *cli) keyRetire(ctx context.Context, fs *flag.FlagSet, args []string) error {
	pos, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	if err := wantArgs(fs, pos, "KEY_ID"); err != nil {
		return err
	}
	conn, apiKey, err := c.businessConn(fs)
	if err != nil {
		return err
	}
	defer conn.Close()
	// Retiring names the key by id; the Business needs no key of its own for it.
	if err := client.NewBusiness(conn, "", apiKey, nil).RetireSigningKey(ctx, pos[0]); err != nil {
		return err
	}
	return c.done(&heraldv1.RetireSigningKeyResponse{}, "retired signing key %s", pos[0])
}

func (c *cli) keyNew(_ context.Context, fs *flag.FlagSet, args []string) error {
	business := c.businessFlag(fs)
	pos, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	if err := wantArgs(fs, pos); err != nil {
		return err
	}
	if *business == "" {
		return usageErr(fs, "--business (or HERALD_BUSINESS_ID) is required")
	}
	path, err := c.signingKeyFile(*business)
	if err != nil {
		return err
	}
	key, err := e2e.GenerateSigningKey()
	if err != nil {
		return err
	}
	err = writePrivate(filepath.Dir(path), path, key.MarshalPrivate(), false)
	if errors.Is(err, iofs.ErrExist) {
		return fmt.Errorf("%s already holds a signing key of business %s: if it is the business's current key, nothing "+
			"is lost (herald key rotate moves to a new one); if not, move it away first", path, *business)
	}
	if err != nil {
		return err
	}
	pub := key.PublicKey()
	if !c.cfg.JSON {
		fmt.Fprintf(c.stderr, "herald: new signing key for %s saved in %s, not registered. To put it in place of the business's "+
			"lost key, ask the operator to run: herald admin replace-signing-key %s --key %s\n"+
			"Every device will then see a key change. (A business with no key yet needs none of this: send registers it.)\n",
			*business, path, *business, hex.EncodeToString(pub))
	}
	resp := &heraldv1.ReplaceSigningKeyRequest{BusinessId: *business, PublicKey: pub}
	return c.result(resp, func(w io.Writer) { fmt.Fprintln(w, hex.EncodeToString(pub)) })
}

func (c *cli) adminReplaceSigningKey(ctx context.Context, fs *flag.FlagSet, args []string) error {
	key := fs.String("key", "", "the business's new Ed25519 public `KEY`, in hex, as herald key new printed it (required)")
	pos, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	if err := wantArgs(fs, pos, "BUSINESS_ID"); err != nil {
		return err
	}
	pub, err := hex.DecodeString(*key)
	if err != nil || len(pub) != ed25519.PublicKeySize {
		return usageErr(fs, "--key: want the 64 hex digits of an Ed25519 public key")
	}
	admin, done, err := c.admin(fs)
	if err != nil {
		return err
	}
	defer done()
	resp, err := admin.ReplaceSigningKey(ctx, &heraldv1.ReplaceSigningKeyRequest{BusinessId: pos[0], PublicKey: pub})
	if err != nil {
		return err
	}
	if !c.cfg.JSON {
		fmt.Fprintf(c.stderr, "business %s signs with key %s from now on; every device that trusted its earlier keys sees a key change\n",
			pos[0], resp.GetKeyId())
	}
	return c.result(resp, func(w io.Writer) { fmt.Fprintln(w, resp.GetKeyId()) })
}
