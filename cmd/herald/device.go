package main

// device.go holds a person's device commands (RecipientService): registering this
// machine as a device, reading its messages, and the person's blocks and consents.
// They act as the device named by --name, whose token, key and gateway address are
// in the state directory.

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
)

func (c *cli) deviceRegister(ctx context.Context, fs *flag.FlagSet, args []string) error {
	phone := fs.String("phone", "", "this person's `PHONE` number in E.164 form, e.g. +15551234567 (required)")
	code := fs.String("code", "", "the one-time `CODE` from herald admin issue-code (required)")
	name := fs.String("name", defaultDevice, "a local `NAME` for this device, to pick it in other device commands")
	pos, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	if err := wantArgs(fs, pos); err != nil {
		return err
	}
	if *phone == "" || *code == "" {
		return usageErr(fs, "--phone and --code are required")
	}
	if err := checkDeviceFree(c.cfg.StateDir, *name); err != nil {
		return err
	}
	alg, private, public, err := newDeviceKey()
	if err != nil {
		return err
	}
	// RegisterDevice needs no token: the code is the credential.
	conn, err := c.cfg.dial(c.cfg.Addr, "")
	if err != nil {
		return err
	}
	defer conn.Close()
	resp, err := heraldv1.NewRecipientServiceClient(conn).RegisterDevice(ctx, &heraldv1.RegisterDeviceRequest{
		PhoneNumber:  *phone,
		Code:         *code,
		PublicKey:    public,
		KeyAlgorithm: alg,
	})
	if err != nil {
		return err
	}
	path, err := saveDevice(c.cfg.StateDir, *name, &deviceState{
		DeviceID:     resp.GetDeviceId(),
		DeviceToken:  resp.GetDeviceToken(),
		KeyAlgorithm: alg.String(),
		PrivateKey:   private,
		Addr:         c.cfg.Addr,
		RegisterTime: time.Now().UTC(),
	})
	if err != nil {
		// The private key existed only in this process, so the registered device
		// can never decrypt anything: say so rather than leave the user guessing.
		return fmt.Errorf("registered device %s but could not save its key, so it cannot read messages; register again with a new code: %w", resp.GetDeviceId(), err)
	}
	if c.cfg.JSON {
		return jsonLine(c.stdout, registered{resp.GetDeviceId(), resp.GetDeviceToken(), path})
	}
	t := table(c.stdout)
	fmt.Fprintf(t, "device id\t%s\n", resp.GetDeviceId())
	fmt.Fprintf(t, "device token\t%s\t(shown once; saved with the private key)\n", resp.GetDeviceToken())
	fmt.Fprintf(t, "state\t%s\n", path)
	return t.Flush()
}

// registered is the --json output of device register.
type registered struct {
	DeviceID    string `json:"device_id"`
	DeviceToken string `json:"device_token"`
	StateFile   string `json:"state_file"`
}

func (c *cli) deviceReceive(ctx context.Context, fs *flag.FlagSet, args []string) error {
	name := deviceFlag(fs)
	forever := fs.Bool("follow", false, "keep waiting for new messages until interrupted; otherwise stop once the queue is drained")
	ack := fs.Bool("ack", false, "acknowledge each message as delivered once printed")
	read := fs.Bool("read", false, "acknowledge each message as read once printed (implies --ack)")
	pos, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	if err := wantArgs(fs, pos); err != nil {
		return err
	}
	dev, client, done, err := c.device(*name, true)
	if err != nil {
		return err
	}
	defer done()
	alg := dev.algorithm()

	ctx, cancel := context.WithCancel(ctx)
	stream, err := client.Receive(ctx, &heraldv1.ReceiveRequest{})
	if err != nil {
		cancel()
		return err
	}
	var received, unreadable int
	err = follow(ctx, stream, cancel, *forever, func(d *heraldv1.Delivery) error {
		received++
		text, openErr := open(alg, dev.PrivateKey, d.GetCiphertext())
		if err := c.printDelivery(d, string(text), openErr); err != nil {
			return err
		}
		if openErr != nil {
			// Acknowledging would tell the business it arrived; it did not, readably.
			unreadable++
			return nil
		}
		if !*ack && !*read {
			return nil
		}
		resp, err := client.Ack(ctx, &heraldv1.AckRequest{MessageIds: []string{d.GetMessageId()}, Read: *read})
		if err != nil {
			return err
		}
		if len(resp.GetUnknownMessageIds()) > 0 {
			fmt.Fprintf(c.stderr, "herald: %s was not acknowledged: no longer queued (expired?)\n", d.GetMessageId())
		}
		return nil
	})
	if err != nil {
		return err
	}
	if received == 0 && !c.cfg.JSON {
		fmt.Fprintln(c.stderr, "no messages")
	}
	if unreadable > 0 {
		return fmt.Errorf("%d of %d messages could not be decrypted with this device's key and were left unacknowledged", unreadable, received)
	}
	return nil
}

// printDelivery prints one delivery and its decrypted text, or why there is none.
func (c *cli) printDelivery(d *heraldv1.Delivery, text string, openErr error) error {
	if c.cfg.JSON {
		out := delivered{
			MessageID:           d.GetMessageId(),
			ClientMessageID:     d.GetClientMessageId(),
			BusinessID:          d.GetBusinessId(),
			BusinessDisplayName: d.GetBusinessDisplayName(),
			Category:            d.GetCategory().String(),
			Kind:                d.GetKind().String(),
			SentTime:            d.GetSentTime().AsTime(),
			ExpireTime:          d.GetExpireTime().AsTime(),
			Text:                text,
		}
		if openErr != nil {
			out.Error = "cannot decrypt: " + openErr.Error()
		}
		return jsonLine(c.stdout, out)
	}
	body := clean(text)
	if openErr != nil {
		body = fmt.Sprintf("[cannot decrypt: %v; not acknowledged]", openErr)
	}
	_, err := fmt.Fprintf(c.stdout, "%s  %s (%s)  %s/%s  %s\n    %s\n",
		timeText(d.GetSentTime()),
		clean(d.GetBusinessDisplayName()), d.GetBusinessId(),
		flagWord(d.GetCategory().String(), "CATEGORY_"), flagWord(d.GetKind().String(), "KIND_"),
		d.GetMessageId(),
		strings.ReplaceAll(body, "\n", "\n    "))
	return err
}

// delivered is one line of device receive --json: the Delivery without its
// ciphertext, plus the text it decrypts to.
type delivered struct {
	MessageID           string    `json:"message_id"`
	ClientMessageID     string    `json:"client_message_id"`
	BusinessID          string    `json:"business_id"`
	BusinessDisplayName string    `json:"business_display_name"`
	Category            string    `json:"category"`
	Kind                string    `json:"kind"`
	SentTime            time.Time `json:"sent_time"`
	ExpireTime          time.Time `json:"expire_time"`
	Text                string    `json:"text"`
	Error               string    `json:"error,omitempty"`
}

func (c *cli) deviceBlock(ctx context.Context, fs *flag.FlagSet, args []string) error {
	name := deviceFlag(fs)
	id, err := c.parseBusinessArg(fs, args)
	if err != nil {
		return err
	}
	_, client, done, err := c.device(*name, false)
	if err != nil {
		return err
	}
	defer done()
	resp, err := client.Block(ctx, &heraldv1.BlockRequest{BusinessId: id})
	if err != nil {
		return err
	}
	return c.result(resp, func(w io.Writer) {
		// Once Block returns, no later message from the business is admitted.
		fmt.Fprintf(w, "blocked %s\n", id)
	})
}

func (c *cli) deviceUnblock(ctx context.Context, fs *flag.FlagSet, args []string) error {
	name := deviceFlag(fs)
	id, err := c.parseBusinessArg(fs, args)
	if err != nil {
		return err
	}
	_, client, done, err := c.device(*name, false)
	if err != nil {
		return err
	}
	defer done()
	resp, err := client.Unblock(ctx, &heraldv1.UnblockRequest{BusinessId: id})
	if err != nil {
		return err
	}
	return c.result(resp, func(w io.Writer) {
		fmt.Fprintf(w, "unblocked %s\n", id)
	})
}

func (c *cli) deviceConsent(ctx context.Context, fs *flag.FlagSet, args []string) error {
	name := deviceFlag(fs)
	category := categoryFlag(fs)
	in, out := consentFlags(fs)
	id, err := c.parseBusinessArg(fs, args)
	if err != nil {
		return err
	}
	cat, err := parseCategory(fs, *category)
	if err != nil {
		return err
	}
	consent, err := parseConsent(fs, *in, *out)
	if err != nil {
		return err
	}
	_, client, done, err := c.device(*name, false)
	if err != nil {
		return err
	}
	defer done()
	resp, err := client.SetConsent(ctx, &heraldv1.SetConsentRequest{BusinessId: id, Category: cat, Consent: consent})
	if err != nil {
		return err
	}
	return c.result(resp, func(w io.Writer) {
		fmt.Fprintf(w, "%s of %s from %s\n", consentText(consent), flagWord(cat.String(), "CATEGORY_"), id)
	})
}

// parseBusinessArg parses a device command whose one argument is a business id.
func (c *cli) parseBusinessArg(fs *flag.FlagSet, args []string) (string, error) {
	pos, err := c.parse(fs, args)
	if err != nil {
		return "", err
	}
	if err := wantArgs(fs, pos, "BUSINESS_ID"); err != nil {
		return "", err
	}
	return pos[0], nil
}

func (c *cli) devicePrefs(ctx context.Context, fs *flag.FlagSet, args []string) error {
	name := deviceFlag(fs)
	pos, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	if err := wantArgs(fs, pos); err != nil {
		return err
	}
	_, client, done, err := c.device(*name, false)
	if err != nil {
		return err
	}
	defer done()
	resp, err := client.ListPreferences(ctx, &heraldv1.ListPreferencesRequest{})
	if err != nil {
		return err
	}
	return c.result(resp, func(w io.Writer) {
		fmt.Fprintln(w, "BUSINESS\tID\tBLOCKED\tTRANSACTIONAL\tMARKETING\tLAST MESSAGE")
		for _, b := range resp.GetBusinesses() {
			blocked := "no"
			if b.GetBlocked() {
				blocked = "yes"
			}
			consents := map[heraldv1.Category]string{}
			for _, cc := range b.GetConsents() {
				consents[cc.GetCategory()] = categoryConsentText(cc)
			}
			last := "never"
			if b.GetLastMessageTime() != nil {
				last = timeText(b.GetLastMessageTime())
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", clean(b.GetDisplayName()), b.GetBusinessId(), blocked,
				orDefault(consents[heraldv1.Category_CATEGORY_TRANSACTIONAL]),
				orDefault(consents[heraldv1.Category_CATEGORY_MARKETING]), last)
		}
	})
}

// categoryConsentText is one cell of the prefs table: the consent and who set it.
func categoryConsentText(cc *heraldv1.CategoryConsent) string {
	if cc.GetConsent() == heraldv1.Consent_CONSENT_UNSPECIFIED {
		return ""
	}
	by := "?"
	switch cc.GetSetBy() {
	case heraldv1.Setter_SETTER_RECIPIENT:
		by = "you"
	case heraldv1.Setter_SETTER_BUSINESS:
		by = "business: " + clean(cc.GetSource())
		if cc.GetReference() != "" {
			by += " " + clean(cc.GetReference())
		}
	}
	return fmt.Sprintf("%s (%s)", consentText(cc.GetConsent()), by)
}

// orDefault names an unset consent by what it means: the category's default policy.
func orDefault(s string) string {
	if s == "" {
		return "default"
	}
	return s
}

// deviceFlag defines --name, the device a command acts as.
func deviceFlag(fs *flag.FlagSet) *string {
	return fs.String("name", defaultDevice, "the device to act as, by the `NAME` it was registered with")
}

// device connects as the device called name. Its token is, in order: --token,
// HERALD_DEVICE_TOKEN, the saved state, HERALD_TOKEN; the saved state comes before
// HERALD_TOKEN because it names this very device, while HERALD_TOKEN may hold another
// kind of token. Without needState a command can run with a token alone; the state
// is then nil.
func (c *cli) device(name string, needState bool) (*deviceState, heraldv1.RecipientServiceClient, func(), error) {
	dev, err := loadDevice(c.cfg.StateDir, name)
	token := c.cfg.specificToken(deviceToken)
	switch {
	case err == nil:
		if token == "" {
			token = dev.DeviceToken
		}
	case needState:
		return nil, nil, nil, err
	case c.cfg.token(deviceToken) != "":
		// No usable state, but a token was given: act with the token alone.
		token = c.cfg.token(deviceToken)
	case errors.Is(err, errNoDevice):
		return nil, nil, nil, fmt.Errorf("%w, or set --token, HERALD_DEVICE_TOKEN or HERALD_TOKEN", err)
	default:
		return nil, nil, nil, err
	}
	addr := c.cfg.Addr
	if dev != nil && dev.Addr != "" && !c.cfg.addrExplicit {
		addr = dev.Addr
	}
	conn, err := c.cfg.dial(addr, token)
	if err != nil {
		return nil, nil, nil, err
	}
	return dev, heraldv1.NewRecipientServiceClient(conn), func() { conn.Close() }, nil
}
