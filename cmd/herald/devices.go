package main

// devices.go holds the commands with which a person's devices watch over each other:
// list them, approve a new one after comparing its code, remove one.

import (
	"context"
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/heraldhq/herald/client"
	"github.com/heraldhq/herald/e2e"
	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
)

func (c *cli) deviceList(ctx context.Context, fs *flag.FlagSet, args []string) error {
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
	devs, err := d.dev.ListDevices(ctx)
	if err != nil {
		return err
	}
	if c.cfg.JSON {
		for _, i := range devs {
			if err := jsonLine(c.stdout, listedDevice{ID: i.ID, Pending: i.Pending, KeyID: i.KeyID, Code: i.Code(),
				Created: i.Created, Activate: i.ActivateTime, This: i.ThisDevice}); err != nil {
				return err
			}
		}
		return nil
	}
	t := table(c.stdout)
	fmt.Fprintln(t, "device\tstate\tcode\tkey id\tregistered\t")
	for _, i := range devs {
		state := "active"
		if i.Pending {
			state = "pending until " + i.ActivateTime.UTC().Format(time.RFC3339)
		}
		this := ""
		if i.ThisDevice {
			this = "(this device)"
		}
		fmt.Fprintf(t, "%s\t%s\t%s\t%s\t%s\t%s\n", i.ID, state, i.Code(), i.KeyID, i.Created.UTC().Format(time.RFC3339), this)
	}
	return t.Flush()
}

// listedDevice is one --json line of device list.
type listedDevice struct {
	ID       string    `json:"device_id"`
	Pending  bool      `json:"pending"`
	KeyID    string    `json:"key_id"`
	Code     string    `json:"code"`
	Created  time.Time `json:"create_time"`
	Activate time.Time `json:"activate_time,omitzero"`
	This     bool      `json:"this_device,omitempty"`
}

func (c *cli) deviceApprove(ctx context.Context, fs *flag.FlagSet, args []string) error {
	name := deviceFlag(fs)
	code := fs.String("code", "", "the `CODE` the new device shows (herald device register printed it), e.g. \"1234 5678\" (required)")
	pos, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	if err := wantArgs(fs, pos, "DEVICE_ID"); err != nil {
		return err
	}
	if *code == "" {
		return usageErr(fs, "--code is required: the code the new device shows, to compare with its key here")
	}
	d, err := c.device(*name, false)
	if err != nil {
		return err
	}
	defer d.close()
	devs, err := d.dev.ListDevices(ctx)
	if err != nil {
		return err
	}
	for _, i := range devs {
		if i.ID != pos[0] || !i.Pending {
			continue
		}
		// The code is computed here from the key the gateway holds: if it differs from
		// what the new device shows, the gateway holds another key than that device's.
		if strings.Join(strings.Fields(*code), "") != strings.ReplaceAll(i.Code(), " ", "") {
			return fmt.Errorf("device %s's key has the code %s here, not %q: it is not the device in your hand; not approved (refuse it with herald device remove %s)",
				i.ID, i.Code(), *code, i.ID)
		}
		if err := d.dev.ApproveDevice(ctx, i.ID, i.KeyID); err != nil {
			return err
		}
		return c.done(&heraldv1.ApproveDeviceResponse{}, "approved %s (key %s)", i.ID, i.KeyID)
	}
	return fmt.Errorf("no pending device %s of this person (herald device list shows them)", pos[0])
}

func (c *cli) deviceRemove(ctx context.Context, fs *flag.FlagSet, args []string) error {
	name := deviceFlag(fs)
	pos, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	if err := wantArgs(fs, pos, "DEVICE_ID"); err != nil {
		return err
	}
	d, err := c.device(*name, false)
	if err != nil {
		return err
	}
	defer d.close()
	if err := d.dev.RemoveDevice(ctx, pos[0]); err != nil {
		return err
	}
	return c.done(&heraldv1.RemoveDeviceResponse{}, "removed %s: its token no longer works", pos[0])
}

// printPending tells the person what to do with a device that waits for approval.
func printPending(c *cli, dev *client.Device) {
	if pending, until := dev.Pending(); pending {
		fmt.Fprintf(c.stdout, "this number has other devices: approve this one from one of them with\n"+
			"  herald device approve %s --code %q\n(or it becomes active at %s unless refused)\n",
			dev.ID(), dev.Code(), until.UTC().Format(time.RFC3339))
	}
}

func (c *cli) deviceAudit(ctx context.Context, fs *flag.FlagSet, args []string) error {
	name := deviceFlag(fs)
	pos, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	if err := wantArgs(fs, pos); err != nil {
		return err
	}
	logKey := c.cfg.LogKey
	if logKey == "" {
		return usageErr(fs, "--log-key (or HERALD_LOG_PUBLIC_KEY) is required: the key log public key the operator publishes (heraldd prints it in dev mode)")
	}
	d, err := c.device(*name, false)
	if err != nil {
		return err
	}
	defer d.close()
	events, err := d.dev.AuditKeys(ctx, logKey)
	if err != nil {
		return err
	}
	if c.cfg.JSON {
		for _, e := range events {
			if err := jsonLine(c.stdout, auditedEvent{Kind: e.Kind.String(), DeviceID: e.ID, Algorithm: e.Algorithm,
				KeyID: e2e.KeyID(e.PublicKey), Code: client.DeviceCode(e.PublicKey), Time: e.Time}); err != nil {
				return err
			}
		}
		return nil
	}
	t := table(c.stdout)
	fmt.Fprintln(t, "time\tevent\tdevice\tcode\tkey id\t")
	for _, e := range events {
		fmt.Fprintf(t, "%s\t%s\t%s\t%s\t%s\t\n", e.Time.UTC().Format(time.RFC3339), e.Kind, e.ID,
			client.DeviceCode(e.PublicKey), e2e.KeyID(e.PublicKey))
	}
	return t.Flush()
}

// auditedEvent is one --json line of device audit.
type auditedEvent struct {
	Kind      string    `json:"event"`
	DeviceID  string    `json:"device_id"`
	Algorithm string    `json:"algorithm"`
	KeyID     string    `json:"key_id"`
	Code      string    `json:"code"`
	Time      time.Time `json:"time"`
}
