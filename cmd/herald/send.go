package main

// send.go holds a business's commands (MessagingService, with the API key): sending
// an encrypted message, looking a recipient up, recording consent and following
// delivery statuses.

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"strings"

	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

func (c *cli) send(ctx context.Context, fs *flag.FlagSet, args []string) error {
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

	conn, err := c.connect(fs, apiKey)
	if err != nil {
		return err
	}
	defer conn.Close()
	client := heraldv1.NewMessagingServiceClient(conn)

	// The keys to encrypt to come from Herald, which also says up front whether the
	// message would be rejected, so nothing is encrypted for nothing.
	look, err := client.LookupRecipient(ctx, &heraldv1.LookupRecipientRequest{Recipient: *to, Category: cat})
	if err != nil {
		return err
	}
	if look.GetOutcome() != heraldv1.Outcome_OUTCOME_ACCEPTED {
		// Shown as a Send result, so that scripts read one shape either way.
		return c.sendResult(&heraldv1.SendResponse{Result: &heraldv1.Result{Outcome: look.GetOutcome()}}, *id, nil)
	}
	msg := &heraldv1.Message{
		Recipient:       *to,
		Category:        cat,
		Kind:            kind,
		ClientMessageId: *id,
	}
	if *ttl > 0 {
		msg.Ttl = durationpb.New(*ttl)
	}
	var devices []string
	for _, d := range look.GetDevices() {
		ct, err := seal(d.GetKeyAlgorithm(), d.GetPublicKey(), []byte(*text))
		if err != nil {
			return fmt.Errorf("device %s: %w", d.GetDeviceId(), err)
		}
		msg.Envelopes = append(msg.Envelopes, &heraldv1.Envelope{DeviceId: d.GetDeviceId(), Ciphertext: ct})
		devices = append(devices, d.GetDeviceId())
	}
	resp, err := client.Send(ctx, &heraldv1.SendRequest{Message: msg})
	if err != nil {
		return err
	}
	return c.sendResult(resp, *id, devices)
}

// sendResult prints the result of send, and makes a rejection exit with status 3.
func (c *cli) sendResult(resp *heraldv1.SendResponse, clientID string, devices []string) error {
	r := resp.GetResult()
	err := c.result(resp, func(w io.Writer) {
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
	conn, err := c.connect(fs, apiKey)
	if err != nil {
		return err
	}
	defer conn.Close()
	resp, err := heraldv1.NewMessagingServiceClient(conn).LookupRecipient(ctx, &heraldv1.LookupRecipientRequest{Recipient: *to, Category: cat})
	if err != nil {
		return err
	}
	err = c.result(resp, func(w io.Writer) {
		fmt.Fprintf(w, "outcome\t%s\n", enumWord(resp.GetOutcome().String(), "OUTCOME_"))
		if len(resp.GetDevices()) == 0 {
			return
		}
		fmt.Fprintln(w, "\nDEVICE\tALGORITHM\tPUBLIC KEY")
		for _, d := range resp.GetDevices() {
			sum := sha256.Sum256(d.GetPublicKey())
			fmt.Fprintf(w, "%s\t%s\t%d bytes, sha256 %s…\n", d.GetDeviceId(),
				enumWord(d.GetKeyAlgorithm().String(), "KEY_ALGORITHM_"),
				len(d.GetPublicKey()), hex.EncodeToString(sum[:8]))
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
	conn, err := c.connect(fs, apiKey)
	if err != nil {
		return err
	}
	defer conn.Close()
	resp, err := heraldv1.NewMessagingServiceClient(conn).RecordConsent(ctx, &heraldv1.RecordConsentRequest{
		Recipient: *to,
		Category:  cat,
		Consent:   consent,
		Evidence: &heraldv1.ConsentEvidence{
			Source: *source,
			// The person gave it just now, as far as this command knows.
			CollectedTime: timestamppb.Now(),
			Reference:     *reference,
		},
	})
	if err != nil {
		return err
	}
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
	conn, err := c.connect(fs, apiKey)
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithCancel(ctx)
	stream, err := heraldv1.NewMessagingServiceClient(conn).StreamStatus(ctx, &heraldv1.StreamStatusRequest{Cursor: *cursor})
	if err != nil {
		cancel()
		return err
	}
	events := 0
	err = follow(ctx, stream, cancel, *forever, func(e *heraldv1.StatusEvent) error {
		events++
		if c.cfg.JSON {
			return jsonLine(c.stdout, e)
		}
		device := e.GetDeviceId()
		if device == "" {
			device = "all"
		}
		_, err := fmt.Fprintf(c.stdout, "%s  %-9s  %s  client=%s  device=%s  cursor=%s\n",
			timeText(e.GetTime()), enumWord(e.GetStatus().String(), "STATUS_"),
			e.GetMessageId(), e.GetClientMessageId(), device, e.GetCursor())
		return err
	})
	if err == nil && events == 0 && !c.cfg.JSON {
		fmt.Fprintln(c.stderr, "no events")
	}
	return err
}
