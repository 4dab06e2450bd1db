package main

// device.go holds a person's device commands, on the SDK's client.Device: registering
// this machine as a device, reading its messages, the person's blocks, consents and
// reports, and the device's keys. They act as the device named by --name, whose state
// (token, keys, pinned business keys) is in the state directory.

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/heraldhq/herald/client"
	"github.com/heraldhq/herald/e2e"
	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// newDeviceAlgorithm is the scheme of keys that `herald device register` generates:
// the post-quantum hybrid, so that recorded traffic stays private.
const newDeviceAlgorithm = e2e.MLKEM768X25519

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
	// RegisterDevice needs no token: the code is the credential.
	conn, err := c.cfg.dial(c.cfg.Addr, "")
	if err != nil {
		return err
	}
	defer conn.Close()
	dev, err := client.Register(ctx, conn, *phone, *code, newDeviceAlgorithm)
	if err != nil {
		return err
	}
	blob, err := dev.MarshalState()
	var path string
	if err == nil {
		path, err = saveDevice(c.cfg.StateDir, *name, &deviceState{Addr: c.cfg.Addr, RegisterTime: time.Now().UTC(), Device: blob})
	}
	if err != nil {
		// The private key existed only in this process, so the registered device
		// can never decrypt anything: say so rather than leave the user guessing.
		return fmt.Errorf("registered device %s but could not save its key, so it cannot read messages; register again with a new code: %w", dev.ID(), err)
	}
	pending, _ := dev.Pending()
	if c.cfg.JSON {
		return jsonLine(c.stdout, registered{dev.ID(), dev.KeyID(), dev.Code(), pending, path})
	}
	t := table(c.stdout)
	fmt.Fprintf(t, "device id\t%s\n", dev.ID())
	fmt.Fprintf(t, "key id\t%s\n", dev.KeyID())
	fmt.Fprintf(t, "code\t%s\n", dev.Code())
	fmt.Fprintf(t, "state\t%s\t(its token and private key: keep it private)\n", path)
	if err := t.Flush(); err != nil {
		return err
	}
	printPending(c, dev)
	return nil
}

// registered is the --json output of device register.
type registered struct {
	DeviceID  string `json:"device_id"`
	KeyID     string `json:"key_id"`
	Code      string `json:"code"`
	Pending   bool   `json:"pending"`
	StateFile string `json:"state_file"`
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
	d, err := c.device(*name, true)
	if err != nil {
		return err
	}
	defer d.close()
	if !*forever {
		// Without --follow an unreachable gateway must be an error, not "no messages":
		// the stream itself would keep reconnecting until the idle wait ends it.
		if err := checkServing(ctx, d.conn); err != nil {
			return err
		}
	}

	ctx, idle := idleContext(ctx, *forever)
	defer idle.stop()
	var received, dropped, kept int
	changed := map[string]*client.KeyChangedError{}
	for m, err := range d.dev.Receive(ctx) {
		if ctx.Err() != nil {
			break // interrupted, or caught up
		}
		idle.pause()
		var kc *client.KeyChangedError
		var rej *client.RejectedDeliveryError
		var unlogged *client.KeyNotInLogError
		switch {
		case errors.As(err, &kc):
			changed[kc.BusinessID] = kc
			received++
			if err := c.printRejected(kc.MessageID, kc.BusinessID, err); err != nil {
				return err
			}
		case errors.As(err, &rej):
			received++
			if rej.Dropped {
				dropped++
			} else {
				kept++
			}
			if err := c.printRejected(rej.MessageID, rej.BusinessID, err); err != nil {
				return err
			}
		case errors.As(err, &unlogged):
			// Not shown, and left queued (a proof may come later); the deliveries
			// after it are read all the same.
			received++
			kept++
			if err := c.printRejected(unlogged.MessageID, unlogged.BusinessID, err); err != nil {
				return err
			}
		case err != nil:
			return err
		default:
			received++
			if err := c.printMessage(m); err != nil {
				return err
			}
			if *ack || *read {
				if err := c.acknowledge(ctx, d.dev, m.ID, *read); err != nil {
					return err
				}
			}
		}
		// Each message may change the state (a pin, a replay record): keep it.
		if err := d.save(); err != nil {
			return err
		}
		idle.resume()
	}
	if received == 0 && !c.cfg.JSON {
		fmt.Fprintln(c.stderr, "no messages")
	}
	var problems []string
	if dropped > 0 {
		problems = append(problems, fmt.Sprintf("%d of %d messages failed verification (forged, altered, replayed or not for this device) and were dropped", dropped, received))
	}
	if kept > 0 {
		problems = append(problems, fmt.Sprintf("%d of %d messages could not be read and stay queued: an unknown format (a newer herald may read them), a business key the key log does not prove, or a gateway that could not be told to drop them", kept, received))
	}
	for _, kc := range changed {
		problems = append(problems, fmt.Sprintf("business %s now signs with a key that no key you trust vouches for (the "+
			"operator replaced its keys, or someone impersonates it), so its messages stay queued, unread; "+
			"if you have made sure with the business that it changed its key, run: herald device trust %s --key %s --name %s",
			kc.BusinessID, kc.BusinessID, hex.EncodeToString(kc.Offered), *name))
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "\n"))
	}
	return nil
}

// acknowledge acknowledges one message as delivered or read.
func (c *cli) acknowledge(ctx context.Context, dev *client.Device, id string, read bool) error {
	if read {
		return dev.Read(ctx, id)
	}
	return dev.Ack(ctx, id)
}

// printMessage prints one verified message and its text.
func (c *cli) printMessage(m *client.Message) error {
	category, kind := heraldv1.Category(m.Category).String(), heraldv1.Kind(m.Kind).String()
	if c.cfg.JSON {
		return jsonLine(c.stdout, delivered{
			MessageID:           m.ID,
			ClientMessageID:     m.ClientMessageID,
			BusinessID:          m.BusinessID,
			BusinessDisplayName: m.BusinessName,
			Category:            category,
			Kind:                kind,
			SentTime:            m.SentTime,
			AdmitTime:           m.AdmitTime,
			ExpireTime:          m.ExpireTime,
			Text:                string(m.Body),
		})
	}
	_, err := fmt.Fprintf(c.stdout, "%s  %s (%s)  %s/%s  %s\n    %s\n",
		m.SentTime.Local().Format(time.RFC3339),
		clean(m.BusinessName), m.BusinessID,
		flagWord(category, "CATEGORY_"), flagWord(kind, "KIND_"),
		m.ID,
		strings.ReplaceAll(clean(string(m.Body)), "\n", "\n    "))
	return err
}

// printRejected prints a delivery the device refused, and why.
func (c *cli) printRejected(id, business string, why error) error {
	if c.cfg.JSON {
		return jsonLine(c.stdout, delivered{MessageID: id, BusinessID: business, Error: why.Error()})
	}
	_, err := fmt.Fprintf(c.stdout, "-  %s  %s\n    [not shown: %s]\n", clean(business), id, clean(why.Error()))
	return err
}

// delivered is one line of device receive --json: a verified message and its text,
// or, with error set, a delivery that was refused.
type delivered struct {
	MessageID           string `json:"message_id"`
	ClientMessageID     string `json:"client_message_id,omitempty"`
	BusinessID          string `json:"business_id"`
	BusinessDisplayName string `json:"business_display_name,omitempty"`
	Category            string `json:"category,omitempty"`
	Kind                string `json:"kind,omitempty"`
	// SentTime is when the business sealed the message; AdmitTime when the gateway
	// admitted it.
	SentTime   time.Time `json:"sent_time,omitzero"`
	AdmitTime  time.Time `json:"admit_time,omitzero"`
	ExpireTime time.Time `json:"expire_time,omitzero"`
	Text       string    `json:"text"`
	Error      string    `json:"error,omitempty"`
}

func (c *cli) deviceBlock(ctx context.Context, fs *flag.FlagSet, args []string) error {
	name := deviceFlag(fs)
	id, err := c.parseBusinessArg(fs, args)
	if err != nil {
		return err
	}
	d, err := c.device(*name, false)
	if err != nil {
		return err
	}
	defer d.close()
	if err := d.dev.Block(ctx, id); err != nil {
		return err
	}
	// Once Block returns, no later message from the business is admitted.
	return c.done(&heraldv1.BlockResponse{}, "blocked %s", id)
}

func (c *cli) deviceUnblock(ctx context.Context, fs *flag.FlagSet, args []string) error {
	name := deviceFlag(fs)
	id, err := c.parseBusinessArg(fs, args)
	if err != nil {
		return err
	}
	d, err := c.device(*name, false)
	if err != nil {
		return err
	}
	defer d.close()
	if err := d.dev.Unblock(ctx, id); err != nil {
		return err
	}
	return c.done(&heraldv1.UnblockResponse{}, "unblocked %s", id)
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
	d, err := c.device(*name, false)
	if err != nil {
		return err
	}
	defer d.close()
	if err := d.dev.SetConsent(ctx, id, e2e.Category(cat), consent); err != nil {
		return err
	}
	return c.done(&heraldv1.SetConsentResponse{}, "%s of %s from %s", consentText(consent), flagWord(cat.String(), "CATEGORY_"), id)
}

func (c *cli) deviceReport(ctx context.Context, fs *flag.FlagSet, args []string) error {
	name := deviceFlag(fs)
	reason := fs.String("reason", "", "what is wrong with it, `REASON` = spam|mislabeled: unwanted, or marketing sent as another category (required)")
	pos, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	if err := wantArgs(fs, pos, "MESSAGE_ID"); err != nil {
		return err
	}
	var r client.ReportReason
	switch *reason {
	case "spam":
		r = client.ReasonSpam
	case "mislabeled", "mislabelled", "mislabeled-category":
		r = client.ReasonMislabeledCategory
	default:
		return usageErr(fs, "--reason %q: want spam or mislabeled", *reason)
	}
	d, err := c.device(*name, false)
	if err != nil {
		return err
	}
	defer d.close()
	if err := d.dev.ReportSpam(ctx, pos[0], r); err != nil {
		return err
	}
	return c.done(&heraldv1.ReportSpamResponse{}, "reported %s as %s", pos[0], *reason)
}

func (c *cli) deviceRotateKey(ctx context.Context, fs *flag.FlagSet, args []string) error {
	name := deviceFlag(fs)
	pos, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	if err := wantArgs(fs, pos); err != nil {
		return err
	}
	d, err := c.device(*name, true)
	if err != nil {
		return err
	}
	defer d.close()
	old := d.dev.KeyID()
	if err := d.dev.RotateKey(ctx); err != nil {
		return err
	}
	if err := d.save(); err != nil {
		// The gateway has the new public key, and this process the only copy of its
		// private half.
		return fmt.Errorf("rotated the key but could not save it, so new messages cannot be read; rotate again: %w", err)
	}
	return c.done(&heraldv1.RotateKeyResponse{KeyId: d.dev.KeyID()}, "key %s replaces %s (kept %d days for messages sealed to it)",
		d.dev.KeyID(), old, int(client.RetiredKeyRetention.Hours()/24))
}

func (c *cli) deviceTrust(ctx context.Context, fs *flag.FlagSet, args []string) error {
	name := deviceFlag(fs)
	key := fs.String("key", "", "the business's new Ed25519 public `KEY`, in hex, as device receive printed it (required)")
	id, err := c.parseBusinessArg(fs, args)
	if err != nil {
		return err
	}
	pub, err := hex.DecodeString(*key)
	if err != nil || len(pub) != ed25519.PublicKeySize {
		return usageErr(fs, "--key: want the 64 hex digits of an Ed25519 public key")
	}
	d, err := c.device(*name, true)
	if err != nil {
		return err
	}
	defer d.close()
	if err := d.dev.TrustKey(id, pub); err != nil {
		return err
	}
	if err := d.save(); err != nil {
		return err
	}
	if c.cfg.JSON {
		return jsonLine(c.stdout, map[string]string{"business_id": id, "key": *key})
	}
	_, err = fmt.Fprintf(c.stdout, "trusting key %s for %s\n", *key, id)
	return err
}

// done prints the result of a command that returns nothing but success: the empty
// response for --json, a line for a human.
func (c *cli) done(resp proto.Message, format string, args ...any) error {
	return c.result(resp, func(w io.Writer) {
		fmt.Fprintf(w, format+"\n", args...)
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
	d, err := c.device(*name, false)
	if err != nil {
		return err
	}
	defer d.close()
	prefs, err := d.dev.Preferences(ctx)
	if err != nil {
		return err
	}
	return c.result(preferencesProto(prefs), func(w io.Writer) {
		fmt.Fprintln(w, "BUSINESS\tID\tBLOCKED\tTRANSACTIONAL\tMARKETING\tLAST MESSAGE")
		for _, p := range prefs {
			blocked := "no"
			if p.Blocked {
				blocked = "yes"
			}
			consents := map[e2e.Category]string{}
			for _, cc := range p.Consents {
				consents[cc.Category] = categoryConsentText(cc)
			}
			last := "never"
			if !p.LastMessageTime.IsZero() {
				last = p.LastMessageTime.Local().Format(time.RFC3339)
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", clean(p.DisplayName), p.BusinessID, blocked,
				orDefault(consents[e2e.Transactional]), orDefault(consents[e2e.Marketing]), last)
		}
	})
}

// preferencesProto is what --json prints for prefs: the gateway's own response.
func preferencesProto(prefs []client.Preference) *heraldv1.ListPreferencesResponse {
	resp := &heraldv1.ListPreferencesResponse{}
	for _, p := range prefs {
		bp := &heraldv1.BusinessPreference{BusinessId: p.BusinessID, DisplayName: p.DisplayName, Blocked: p.Blocked}
		if !p.LastMessageTime.IsZero() {
			bp.LastMessageTime = timestamppb.New(p.LastMessageTime)
		}
		for _, cc := range p.Consents {
			pc := &heraldv1.CategoryConsent{Category: heraldv1.Category(cc.Category), Consent: cc.Consent, SetBy: cc.SetBy,
				Source: cc.Source, Reference: cc.Reference}
			if !cc.UpdateTime.IsZero() {
				pc.UpdateTime = timestamppb.New(cc.UpdateTime)
			}
			bp.Consents = append(bp.Consents, pc)
		}
		resp.Businesses = append(resp.Businesses, bp)
	}
	return resp
}

// categoryConsentText is one cell of the prefs table: the consent and who set it.
func categoryConsentText(cc client.CategoryConsent) string {
	if cc.Consent == heraldv1.Consent_CONSENT_UNSPECIFIED {
		return ""
	}
	by := "?"
	switch cc.SetBy {
	case heraldv1.Setter_SETTER_RECIPIENT:
		by = "you"
	case heraldv1.Setter_SETTER_BUSINESS:
		by = "business: " + clean(cc.Source)
		if cc.Reference != "" {
			by += " " + clean(cc.Reference)
		}
	}
	return fmt.Sprintf("%s (%s)", consentText(cc.Consent), by)
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

// openDevice is a device loaded from the state directory, connected to its gateway.
type openDevice struct {
	dev   *client.Device
	conn  *grpc.ClientConn
	state *deviceState
	save  func() error
	close func()
}

// device loads the device called name and connects to the gateway it registered with
// (unless --addr or HERALD_ADDR says otherwise). With changes, the command may change
// the device's state: it holds the device's lock until close, and save writes the
// state back.
func (c *cli) device(name string, changes bool) (*openDevice, error) {
	st, err := loadDevice(c.cfg.StateDir, name)
	if err != nil {
		return nil, err
	}
	unlock := func() {}
	if changes {
		if unlock, err = lockDevice(c.cfg.StateDir, name); err != nil {
			return nil, err
		}
		// Read again under the lock: another command may have changed it meanwhile.
		if st, err = loadDevice(c.cfg.StateDir, name); err != nil {
			unlock()
			return nil, err
		}
	}
	addr := c.cfg.Addr
	if st.Addr != "" && !c.cfg.addrExplicit {
		addr = st.Addr
	}
	conn, err := c.cfg.dial(addr, "")
	if err != nil {
		unlock()
		return nil, err
	}
	var opts []client.DeviceOption
	if c.cfg.LogKey != "" {
		opts = append(opts, client.WithKeyLog(c.cfg.LogKey, nil)) // the device's state holds its checkpoint
	}
	dev, err := client.LoadDevice(conn, st.Device, opts...)
	if err != nil {
		conn.Close()
		unlock()
		return nil, fmt.Errorf("device %q: %w", name, err)
	}
	d := &openDevice{dev: dev, conn: conn, state: st, close: func() { conn.Close(); unlock() }}
	d.save = func() error {
		if !changes {
			return errors.New("internal error: saving a device opened read-only")
		}
		blob, err := dev.MarshalState()
		if err != nil {
			return err
		}
		st.Device = blob
		return updateDevice(c.cfg.StateDir, name, st)
	}
	return d, nil
}
