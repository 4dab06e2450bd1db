package main

// send.go holds a business's commands, on the SDK's client.Business (with the API
// key): sending an end-to-end encrypted message, looking a recipient up, recording
// consent and following delivery statuses.

import (
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/heraldhq/herald/client"
	"github.com/heraldhq/herald/e2e"
	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

func (c *cli) send(ctx context.Context, fs *flag.FlagSet, args []string) error {
	business := fs.String("business", c.cfg.getenv("HERALD_BUSINESS_ID"), "the sending business's `ID`, as admin create-business printed it (HERALD_BUSINESS_ID; required): sealed into the message, where devices check it")
	to := recipientFlag(fs)
	category := categoryFlag(fs)
	kindName := fs.String("kind", "", "message kind, `KIND` = "+enumChoices(heraldv1.Kind_value, "KIND_")+"; offer is the only marketing kind and its default")
	text := fs.String("text", "", "the message `TEXT` (required); only the recipient's devices can read it")
	id := fs.String("id", "", "client message `ID`, the idempotency key: sending again with the same id delivers nothing twice (default: random)")
	ttl := fs.Duration("ttl", 0, "drop the message if undelivered after this `DURATION`, 1s to 720h (default: the gateway's, 30 days)")
	pos, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	if err := wantArgs(fs, pos); err != nil {
		return err
	}
	if *to == "" || *text == "" {
		return usageErr(fs, "--to and --text are required")
	}
	if *business == "" {
		return usageErr(fs, "--business (or HERALD_BUSINESS_ID) is required: the id of the business the API key belongs to")
	}
	cat, err := parseCategory(fs, *category)
	if err != nil {
		return err
	}
	kind, err := parseKind(fs, *kindName, cat)
	if err != nil {
		return err
	}
	if *ttl < 0 {
		return usageErr(fs, "--ttl must be positive")
	}
	if *id == "" {
		*id = randomMessageID()
	}

	conn, key, err := c.businessConn(fs)
	if err != nil {
		return err
	}
	defer conn.Close()
	b, err := c.signingBusiness(ctx, conn, *business, key)
	if err != nil {
		return err
	}
	opts := []client.SendOption{client.WithClientMessageID(*id)}
	if *ttl > 0 {
		opts = append(opts, client.WithTTL(*ttl))
	}
	sent, err := b.Send(ctx, *to, e2e.Category(cat), e2e.Kind(kind), []byte(*text), opts...)
	var rejected *client.RejectedError
	switch {
	case errors.As(err, &rejected):
		return c.sendResult(rejectedResult(rejected), *id, nil)
	case err != nil:
		return err
	}
	return c.sendResult(&heraldv1.Result{Outcome: heraldv1.Outcome_OUTCOME_ACCEPTED, MessageId: sent.MessageID, Duplicate: sent.Duplicate},
		*id, sent.DeviceIDs)
}

// signingBusiness is the business id with its signing key (signingKey), which it
// makes sure is the business's current key. The first time (no key here, none
// registered) it makes one, saves it and registers it. It never replaces a key: a
// machine without the current key gets an error saying where to get it, and how to
// have the operator replace a lost one.
func (c *cli) signingBusiness(ctx context.Context, conn grpc.ClientConnInterface, id, apiKey string) (*client.Business, error) {
	signer, path, made, err := c.signingKey(id, true)
	if err != nil {
		return nil, err
	}
	var opts []client.BusinessOption
	if c.cfg.LogKey != "" {
		opts = append(opts, client.WithKeyLog(c.cfg.LogKey, nil))
	}
	b := client.NewBusiness(conn, id, apiKey, signer, opts...)
	err = b.RegisterSigningKey(ctx)
	switch {
	case errors.Is(err, client.ErrSigningKeyExists) && made:
		// Never registered, so never used: nothing is lost with it.
		os.Remove(path)
		return nil, fmt.Errorf("business %s has a signing key registered, and this machine does not have it: copy %s from the "+
			"machine that made it, or set HERALD_SIGNING_KEY_FILE to that key file. If every copy is lost, make a new key here "+
			"with 'herald key new' and ask the operator to put it in place of the lost one (herald admin replace-signing-key); "+
			"every device will then see a key change", id, filepath.Base(path))
	case errors.Is(err, client.ErrSigningKeyExists):
		return nil, fmt.Errorf("the signing key in %s is not business %s's current key: if another machine rotated it "+
			"(herald key rotate), copy that machine's key file here; if it is a new key made for a lost one (herald key new), "+
			"the operator has yet to put it in place (herald admin replace-signing-key)", path, id)
	case err != nil:
		return nil, err
	}
	if made && !c.cfg.JSON {
		fmt.Fprintf(c.stderr, "herald: new signing key for %s registered and saved in %s; devices trust it from now on\n", id, path)
	}
	return b, nil
}

// signingKey is the business's signing key and the file it is in: the file
// HERALD_SIGNING_KEY_FILE names, or else business-ID.key in the state directory.
// When the state directory has none and create is set, it makes one and saves it
// (made); another herald that saved one meanwhile wins, and its key is returned.
func (c *cli) signingKey(id string, create bool) (key *e2e.SigningKey, path string, made bool, err error) {
	if file := c.cfg.getenv("HERALD_SIGNING_KEY_FILE"); file != "" {
		// A key the user keeps elsewhere is never made here.
		seed, err := os.ReadFile(file)
		if err != nil {
			return nil, "", false, fmt.Errorf("HERALD_SIGNING_KEY_FILE: %w", err)
		}
		key, err := e2e.ParseSigningKey(seed)
		if err != nil {
			return nil, "", false, fmt.Errorf("HERALD_SIGNING_KEY_FILE %s: %w", file, err)
		}
		return key, file, false, nil
	}
	path, err = signingKeyPath(c.cfg.StateDir, id)
	if err != nil {
		return nil, "", false, err
	}
	key, saved, err := loadSigningKey(c.cfg.StateDir, id)
	switch {
	case err != nil:
		return nil, "", false, err
	case saved:
		return key, path, false, nil
	case !create:
		return nil, "", false, fmt.Errorf("no signing key of business %s in %s (nor HERALD_SIGNING_KEY_FILE set)", id, c.cfg.StateDir)
	}
	_, err = saveSigningKey(c.cfg.StateDir, id, key)
	if errors.Is(err, fs.ErrExist) {
		key, _, err = loadSigningKey(c.cfg.StateDir, id)
		return key, path, false, err
	}
	if err != nil {
		return nil, "", false, err
	}
	return key, path, true, nil
}

// signingKeyFile is the file of the business's signing key: the one
// HERALD_SIGNING_KEY_FILE names, or else business-ID.key in the state directory.
func (c *cli) signingKeyFile(id string) (string, error) {
	if file := c.cfg.getenv("HERALD_SIGNING_KEY_FILE"); file != "" {
		return file, nil
	}
	return signingKeyPath(c.cfg.StateDir, id)
}

// rejectedResult is a rejection as the Result the gateway gave.
func rejectedResult(e *client.RejectedError) *heraldv1.Result {
	r := &heraldv1.Result{Outcome: e.Outcome, MissingDeviceIds: e.MissingDeviceIDs, UnknownDeviceIds: e.UnknownDeviceIDs,
		RetiredKeyDeviceIds: e.RetiredKeyDeviceIDs}
	if e.RetryAfter > 0 {
		r.RetryAfter = durationpb.New(e.RetryAfter)
	}
	return r
}

// businessConn dials the gateway for a business command and returns the API key,
// which the SDK sends with each call.
func (c *cli) businessConn(fs *flag.FlagSet) (*grpc.ClientConn, string, error) {
	key := c.cfg.token(apiKey)
	if key == "" {
		return nil, "", usageErr(fs, "no %s: set --token, %s or HERALD_TOKEN", apiKey.what, apiKey.env)
	}
	conn, err := c.cfg.dial(c.cfg.Addr, "")
	return conn, key, err
}

// sendResult prints the result of send, and makes a rejection exit with status 3.
func (c *cli) sendResult(r *heraldv1.Result, clientID string, devices []string) error {
	err := c.result(&heraldv1.SendResponse{Result: r}, func(w io.Writer) {
		fmt.Fprintf(w, "outcome\t%s\n", enumWord(r.GetOutcome().String(), "OUTCOME_"))
		if r.GetMessageId() != "" {
			fmt.Fprintf(w, "message id\t%s\n", r.GetMessageId())
		}
		fmt.Fprintf(w, "client message id\t%s\n", clientID)
		if r.GetOutcome() == heraldv1.Outcome_OUTCOME_ACCEPTED && !r.GetDuplicate() {
			fmt.Fprintf(w, "sealed for\t%s\n", strings.Join(devices, ", "))
		}
		if r.GetDuplicate() {
			fmt.Fprintln(w, "duplicate\tyes: the result of the first send with this id; nothing delivered again")
		}
		if ids := r.GetMissingDeviceIds(); len(ids) > 0 {
			fmt.Fprintf(w, "missing devices\t%s\n", strings.Join(ids, ", "))
		}
		if ids := r.GetUnknownDeviceIds(); len(ids) > 0 {
			fmt.Fprintf(w, "unknown devices\t%s\n", strings.Join(ids, ", "))
		}
		if ids := r.GetRetiredKeyDeviceIds(); len(ids) > 0 {
			fmt.Fprintf(w, "rotated-key devices\t%s\n", strings.Join(ids, ", "))
		}
		if r.GetRetryAfter() != nil {
			fmt.Fprintf(w, "retry after\t%s\n", r.GetRetryAfter().AsDuration())
		}
		for _, v := range r.GetViolations() {
			fmt.Fprintf(w, "invalid %s\t%s\n", v.GetField(), v.GetDescription())
		}
	})
	if err != nil {
		return err
	}
	if r.GetOutcome() != heraldv1.Outcome_OUTCOME_ACCEPTED {
		return &rejectedError{outcome: r.GetOutcome().String()}
	}
	return nil
}

// recipientFlag defines --to.
func recipientFlag(fs *flag.FlagSet) *string {
	return fs.String("to", "", "the recipient's `PHONE` number in E.164 form, e.g. +15551234567 (required)")
}

// parseKind reads --kind, which may be left out for marketing: it has one kind.
func parseKind(fs *flag.FlagSet, s string, cat heraldv1.Category) (heraldv1.Kind, error) {
	if s == "" && cat == heraldv1.Category_CATEGORY_MARKETING {
		return heraldv1.Kind_KIND_OFFER, nil
	}
	v, ok := parseEnum(heraldv1.Kind_value, "KIND_", s)
	if !ok {
		return 0, usageErr(fs, "--kind %q: want one of %s", s, enumChoices(heraldv1.Kind_value, "KIND_"))
	}
	return heraldv1.Kind(v), nil
}

// randomMessageID makes a client message id for a send that did not name one. It is
// printed, so the send can be repeated with --id without risk of a second delivery.
func randomMessageID() string {
	return "cli-" + rand.Text()
}

func (c *cli) lookup(ctx context.Context, fs *flag.FlagSet, args []string) error {
	to := recipientFlag(fs)
	category := categoryFlag(fs)
	pos, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	if err := wantArgs(fs, pos); err != nil {
		return err
	}
	if *to == "" {
		return usageErr(fs, "--to is required")
	}
	cat, err := parseCategory(fs, *category)
	if err != nil {
		return err
	}
	conn, key, err := c.businessConn(fs)
	if err != nil {
		return err
	}
	defer conn.Close()
	devices, err := client.NewBusiness(conn, "", key, nil).Lookup(ctx, *to, e2e.Category(cat))
	var rejected *client.RejectedError
	resp := &heraldv1.LookupRecipientResponse{Outcome: heraldv1.Outcome_OUTCOME_ACCEPTED}
	switch {
	case errors.As(err, &rejected):
		resp.Outcome = rejected.Outcome
	case err != nil:
		return err
	}
	for _, d := range devices {
		resp.Devices = append(resp.Devices, &heraldv1.Device{DeviceId: d.DeviceID, PublicKey: d.PublicKey,
			KeyAlgorithm: heraldv1.KeyAlgorithm(d.Algorithm), KeyId: e2e.KeyID(d.PublicKey)})
	}
	err = c.result(resp, func(w io.Writer) {
		fmt.Fprintf(w, "outcome\t%s\n", enumWord(resp.GetOutcome().String(), "OUTCOME_"))
		if len(resp.GetDevices()) == 0 {
			return
		}
		fmt.Fprintln(w, "\nDEVICE\tALGORITHM\tKEY ID\tPUBLIC KEY")
		for _, d := range resp.GetDevices() {
			fmt.Fprintf(w, "%s\t%s\t%s\t%d bytes\n", d.GetDeviceId(),
				enumWord(d.GetKeyAlgorithm().String(), "KEY_ALGORITHM_"), d.GetKeyId(), len(d.GetPublicKey()))
		}
	})
	if err != nil {
		return err
	}
	if resp.GetOutcome() != heraldv1.Outcome_OUTCOME_ACCEPTED {
		return &rejectedError{outcome: resp.GetOutcome().String()}
	}
	return nil
}

func (c *cli) consentRecord(ctx context.Context, fs *flag.FlagSet, args []string) error {
	to := recipientFlag(fs)
	category := categoryFlag(fs)
	in, out := consentFlags(fs)
	source := fs.String("source", "", "the `SOURCE` of the consent: where it was collected, e.g. checkout-form (required)")
	reference := fs.String("reference", "", "the business's own reference `REF` for it: a form id, a ticket")
	pos, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	if err := wantArgs(fs, pos); err != nil {
		return err
	}
	if *to == "" || *source == "" {
		return usageErr(fs, "--to and --source are required")
	}
	cat, err := parseCategory(fs, *category)
	if err != nil {
		return err
	}
	consent, err := parseConsent(fs, *in, *out)
	if err != nil {
		return err
	}
	conn, key, err := c.businessConn(fs)
	if err != nil {
		return err
	}
	defer conn.Close()
	// The person gave it just now, as far as this command knows.
	r, err := client.NewBusiness(conn, "", key, nil).RecordConsent(ctx, *to, e2e.Category(cat), consent,
		client.Evidence{Source: *source, CollectedTime: time.Now(), Reference: *reference})
	if err != nil {
		return err
	}
	resp := &heraldv1.RecordConsentResponse{EffectiveConsent: r.Effective, OverriddenByRecipient: r.OverriddenByRecipient}
	return c.result(resp, func(w io.Writer) {
		fmt.Fprintf(w, "effective\t%s\n", consentText(resp.GetEffectiveConsent()))
		if resp.GetOverriddenByRecipient() {
			fmt.Fprintln(w, "overridden\tyes: the recipient's own choice or block governs")
		}
	})
}

func (c *cli) statuses(ctx context.Context, fs *flag.FlagSet, args []string) error {
	cursor := fs.String("cursor", "", "resume after the event with this `CURSOR`; default: the oldest retained event")
	forever := fs.Bool("follow", false, "keep waiting for new events until interrupted; otherwise stop once caught up")
	pos, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	if err := wantArgs(fs, pos); err != nil {
		return err
	}
	conn, key, err := c.businessConn(fs)
	if err != nil {
		return err
	}
	defer conn.Close()
	if !*forever {
		if err := checkServing(ctx, conn); err != nil {
			return err
		}
	}
	b := client.NewBusiness(conn, "", key, nil, client.WithCursor(*cursor))
	ctx, idle := idleContext(ctx, *forever)
	defer idle.stop()
	events := 0
	for e, err := range b.Statuses(ctx) {
		if ctx.Err() != nil {
			break // interrupted, or caught up
		}
		if err != nil {
			return err
		}
		idle.pause()
		events++
		if c.cfg.JSON {
			err = jsonLine(c.stdout, &heraldv1.StatusEvent{Cursor: e.Cursor, MessageId: e.MessageID, ClientMessageId: e.ClientMessageID,
				Status: e.Status, DeviceId: e.DeviceID, Time: timestamppb.New(e.Time), FailureReason: e.FailureReason})
		} else {
			device := e.DeviceID
			if device == "" {
				device = "all"
			}
			why := ""
			if e.Status == client.StatusFailed {
				why = "  reason=" + enumWord(e.FailureReason.String(), "REJECT_REASON_")
			}
			_, err = fmt.Fprintf(c.stdout, "%s  %-9s  %s  client=%s  device=%s%s  cursor=%s\n",
				e.Time.Local().Format(time.RFC3339), enumWord(e.Status.String(), "STATUS_"),
				e.MessageID, e.ClientMessageID, device, why, e.Cursor)
		}
		if err != nil {
			return err
		}
		idle.resume()
	}
	if events == 0 && !c.cfg.JSON {
		fmt.Fprintln(c.stderr, "no events")
	}
	return nil
}
