package main

// admin.go holds the operator's commands (AdminService, with the admin token). Each
// prints the one value a script needs next on stdout, alone, so that
// `BIZ=$(herald admin create-business --name Acme)` works; anything else goes to
// stderr.

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"

	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
)

func (c *cli) adminCreateBusiness(ctx context.Context, fs *flag.FlagSet, args []string) error {
	name := fs.String("name", "", "the display `NAME` shown to recipients, 1 to 100 characters (required)")
	pos, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	if err := wantArgs(fs, pos); err != nil {
		return err
	}
	if *name == "" {
		return usageErr(fs, "--name is required")
	}
	admin, done, err := c.admin(fs)
	if err != nil {
		return err
	}
	defer done()
	resp, err := admin.CreateBusiness(ctx, &heraldv1.CreateBusinessRequest{DisplayName: *name})
	if err != nil {
		return err
	}
	return c.result(resp, func(w io.Writer) {
		fmt.Fprintln(w, resp.GetBusinessId())
	})
}

func (c *cli) adminGetBusiness(ctx context.Context, fs *flag.FlagSet, args []string) error {
	pos, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	if err := wantArgs(fs, pos, "BUSINESS_ID"); err != nil {
		return err
	}
	admin, done, err := c.admin(fs)
	if err != nil {
		return err
	}
	defer done()
	resp, err := admin.GetBusiness(ctx, &heraldv1.GetBusinessRequest{BusinessId: pos[0]})
	if err != nil {
		return err
	}
	return c.result(resp, func(w io.Writer) {
		b := resp.GetBusiness()
		keys := strings.Join(b.GetActiveKeyIds(), ", ")
		if keys == "" {
			keys = "none"
		}
		fmt.Fprintf(w, "id\t%s\n", b.GetBusinessId())
		fmt.Fprintf(w, "name\t%s\n", clean(b.GetDisplayName()))
		fmt.Fprintf(w, "created\t%s\n", timeText(b.GetCreateTime()))
		fmt.Fprintf(w, "active keys\t%s\n", keys)
		printLimits(w, b)
	})
}

// printLimits prints a business's limits and quality figure.
func printLimits(w io.Writer, b *heraldv1.Business) {
	if l := b.GetLimits(); l != nil {
		unique := fmt.Sprint(l.GetDailyUniqueRecipients())
		if l.GetUnlimitedUniqueRecipients() {
			unique = "unlimited"
		}
		fmt.Fprintf(w, "rate\t%g/s, burst %d\n", l.GetMessagesPerSecond(), l.GetBurst())
		fmt.Fprintf(w, "new recipients\t%s per day\n", unique)
	}
	if q := b.GetQuality(); q != nil {
		fmt.Fprintf(w, "quality\t%d reports / %d delivered = %.4f (threshold %g, window %ds)\n",
			q.GetReports(), q.GetDelivered(), q.GetReportRate(), q.GetThreshold(), q.GetWindowSeconds())
		if q.GetLastStepDownTime() != nil {
			fmt.Fprintf(w, "stepped down\t%s\n", timeText(q.GetLastStepDownTime()))
		}
	}
}

func (c *cli) adminSetLimits(ctx context.Context, fs *flag.FlagSet, args []string) error {
	rate := fs.Float64("rate", 0, "sustained messages per `SECOND` (required)")
	burst := fs.Uint("burst", 0, "messages at once above the rate (required)")
	daily := fs.String("daily-unique", "", "new recipients per rolling 24 h: a number, or \"unlimited\" (required)")
	pos, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	if err := wantArgs(fs, pos, "BUSINESS_ID"); err != nil {
		return err
	}
	req := &heraldv1.SetBusinessLimitsRequest{BusinessId: pos[0], MessagesPerSecond: *rate, Burst: uint32(*burst)}
	switch *daily {
	case "":
		return usageErr(fs, "--daily-unique is required (a number or unlimited)")
	case "unlimited":
		req.UnlimitedUniqueRecipients = true
	default:
		var n uint32
		if _, err := fmt.Sscan(*daily, &n); err != nil {
			return usageErr(fs, "--daily-unique: want a number or unlimited")
		}
		req.DailyUniqueRecipients = n
	}
	admin, done, err := c.admin(fs)
	if err != nil {
		return err
	}
	defer done()
	resp, err := admin.SetBusinessLimits(ctx, req)
	if err != nil {
		return err
	}
	return c.result(resp, func(w io.Writer) { printLimits(w, resp.GetBusiness()) })
}

func (c *cli) adminIssueKey(ctx context.Context, fs *flag.FlagSet, args []string) error {
	pos, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	if err := wantArgs(fs, pos, "BUSINESS_ID"); err != nil {
		return err
	}
	admin, done, err := c.admin(fs)
	if err != nil {
		return err
	}
	defer done()
	resp, err := admin.IssueApiKey(ctx, &heraldv1.IssueApiKeyRequest{BusinessId: pos[0]})
	if err != nil {
		return err
	}
	if !c.cfg.JSON {
		fmt.Fprintf(c.stderr, "key id %s; the key below is shown only this once (Herald keeps only its hash)\n", resp.GetKeyId())
	}
	return c.result(resp, func(w io.Writer) {
		fmt.Fprintln(w, resp.GetApiKey())
	})
}

func (c *cli) adminRevokeKey(ctx context.Context, fs *flag.FlagSet, args []string) error {
	key := fs.String("key", "", "the `API_KEY` itself, instead of its KEY_ID")
	pos, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	req := &heraldv1.RevokeApiKeyRequest{ApiKey: *key}
	switch {
	case len(pos) == 1 && *key == "":
		req.KeyId = pos[0]
	case len(pos) == 0 && *key != "":
	default:
		return usageErr(fs, "want either KEY_ID or --key API_KEY")
	}
	admin, done, err := c.admin(fs)
	if err != nil {
		return err
	}
	defer done()
	resp, err := admin.RevokeApiKey(ctx, req)
	if err != nil {
		return err
	}
	return c.result(resp, func(w io.Writer) {
		// Every gateway refuses the key within 5 seconds (admin.proto).
		fmt.Fprintln(w, "revoked")
	})
}

func (c *cli) adminIssueCode(ctx context.Context, fs *flag.FlagSet, args []string) error {
	pos, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	if err := wantArgs(fs, pos, "PHONE"); err != nil {
		return err
	}
	admin, done, err := c.admin(fs)
	if err != nil {
		return err
	}
	defer done()
	resp, err := admin.IssueVerificationCode(ctx, &heraldv1.IssueVerificationCodeRequest{PhoneNumber: pos[0]})
	if err != nil {
		return err
	}
	if !c.cfg.JSON {
		fmt.Fprintf(c.stderr, "one-time code for %s, valid until %s\n", pos[0], timeText(resp.GetExpireTime()))
	}
	return c.result(resp, func(w io.Writer) {
		fmt.Fprintln(w, resp.GetCode())
	})
}

// admin connects with the admin token.
func (c *cli) admin(fs *flag.FlagSet) (heraldv1.AdminServiceClient, func(), error) {
	conn, err := c.connect(fs, adminToken)
	if err != nil {
		return nil, nil, err
	}
	return heraldv1.NewAdminServiceClient(conn), func() { conn.Close() }, nil
}
