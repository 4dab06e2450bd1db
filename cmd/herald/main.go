// Command herald is the operator and device CLI of Herald: it creates businesses and
// keys, registers a device and reads its messages, and sends messages as a business,
// so that the whole path can be tried by hand against a gateway. Its business and
// device commands use the public SDK (package client), so every message it sends or
// reads is end-to-end encrypted and verified as any app's would be.
//
// Run `herald -h` for the commands.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	"github.com/heraldhq/herald/internal/version"
)

// Exit statuses, as the usage text documents them.
const (
	exitOK       = 0
	exitError    = 1 // the command failed: a gRPC error, a file it could not write...
	exitUsage    = 2 // the command line is wrong
	exitRejected = 3 // the message was (or would be) rejected: BLOCKED, OPTED_OUT, ...
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// cli is one run of the command: its settings and where it writes.
type cli struct {
	cfg    Config
	stdout io.Writer
	stderr io.Writer
	cmd    *command // the command being run, for its usage
}

// run runs the command line args and returns the exit status. The environment and
// the output streams are parameters so that tests can run the CLI in-process.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	c := &cli{cfg: loadConfig(getenv), stdout: stdout, stderr: stderr}
	err := c.dispatch(ctx, args)
	if err != nil {
		err = c.explain(ctx, err)
	}
	var usage *usageError
	var rejected *rejectedError
	switch {
	case err == nil || errors.Is(err, errHelpShown):
		return exitOK
	case errors.As(err, &usage):
		fmt.Fprintf(stderr, "herald: %s\n", usage.msg)
		if usage.cmd != "" {
			fmt.Fprintf(stderr, "Run 'herald %s -h' for usage.\n", usage.cmd)
		} else {
			fmt.Fprintln(stderr, "Run 'herald -h' for usage.")
		}
		return exitUsage
	case errors.As(err, &rejected):
		// The outcome is the command's result and is already on stdout.
		return exitRejected
	case c.cfg.JSON:
		jsonLine(stderr, errorJSON(err))
		return exitError
	default:
		fmt.Fprintf(stderr, "herald: %s\n", errorText(err))
		return exitError
	}
}

// usageError is a wrong command line; it exits with status 2.
type usageError struct {
	cmd string // the command whose usage to point at; "" for the top level
	msg string
}

func (e *usageError) Error() string { return e.msg }

// rejectedError is a message that Herald rejected (or would reject) by policy; the
// outcome was printed as the result and the exit status is 3, so scripts can tell
// "not allowed" from "failed".
type rejectedError struct {
	outcome string
}

func (e *rejectedError) Error() string { return "rejected: " + e.outcome }

// command is one thing herald does.
type command struct {
	name    string // the words that select it, e.g. "admin issue-key"
	args    string // its synopsis after the name
	summary string // one line for the command list
	// run parses args with fs (named after the command; run defines its own flags
	// on it) and does the command.
	run func(c *cli, ctx context.Context, fs *flag.FlagSet, args []string) error
}

// commands is every command, in the order the usage lists them.
var commands = []*command{
	{"admin create-business", "--name NAME", "create a business; prints its id", (*cli).adminCreateBusiness},
	{"admin get-business", "BUSINESS_ID", "show a business: active key ids, limits, quality", (*cli).adminGetBusiness},
	{"admin set-limits", "BUSINESS_ID --rate N --burst N --daily-unique N|unlimited", "set a business's limits", (*cli).adminSetLimits},
	{"admin issue-key", "BUSINESS_ID", "issue an API key; prints the key (shown once) and its id", (*cli).adminIssueKey},
	{"admin revoke-key", "KEY_ID | --key API_KEY", "revoke an API key", (*cli).adminRevokeKey},
	{"admin issue-code", "PHONE", "issue a one-time device verification code for a phone number", (*cli).adminIssueCode},
	{"admin replace-signing-key", "BUSINESS_ID --key KEY", "put a new signing key in place of a business's lost ones; every device sees a key change", (*cli).adminReplaceSigningKey},

	{"device register", "--phone PHONE --code CODE [--name NAME]", "generate a key pair here and register this device", (*cli).deviceRegister},
	{"device receive", "[--name NAME] [--follow] [--ack | --read]", "print this device's messages, decrypted", (*cli).deviceReceive},
	{"device block", "[--name NAME] BUSINESS_ID", "block every message from a business", (*cli).deviceBlock},
	{"device unblock", "[--name NAME] BUSINESS_ID", "lift a block", (*cli).deviceUnblock},
	{"device consent", "[--name NAME] BUSINESS_ID --category CATEGORY (--in | --out)", "opt in or out of a business's messages of one category", (*cli).deviceConsent},
	{"device prefs", "[--name NAME]", "list the businesses this person has preferences for", (*cli).devicePrefs},
	{"device report", "[--name NAME] MESSAGE_ID --reason spam|mislabeled", "report a message as spam, or as marketing sent under another category", (*cli).deviceReport},
	{"device rotate-key", "[--name NAME]", "replace this device's key pair; messages sealed to the old key still open", (*cli).deviceRotateKey},
	{"device list", "[--name NAME]", "list this person's devices, active and pending, with their codes", (*cli).deviceList},
	{"device approve", "[--name NAME] DEVICE_ID --code CODE", "approve a new device of this person, after comparing the code it shows", (*cli).deviceApprove},
	{"device remove", "[--name NAME] DEVICE_ID", "remove (or refuse) a device of this person; its token stops working", (*cli).deviceRemove},
	{"device audit", "[--name NAME] (--log-key KEY | HERALD_LOG_PUBLIC_KEY)", "show every key the gateway's key log holds for this person's number, each proven in the log", (*cli).deviceAudit},
	{"device trust", "[--name NAME] BUSINESS_ID --key KEY", "trust a business's new signing key, after device receive reported it changed", (*cli).deviceTrust},

	{"send", "--business ID --to PHONE --category CATEGORY --kind KIND --text TEXT [--id ID] [--ttl DURATION]", "encrypt a message end to end for each of the recipient's devices and send it", (*cli).send},
	{"lookup", "--to PHONE --category CATEGORY", "show whether a message would be admitted, and the recipient's devices", (*cli).lookup},
	{"consent record", "--to PHONE --category CATEGORY (--in | --out) --source SOURCE [--reference REF]", "record a consent the business collected", (*cli).consentRecord},
	{"statuses", "[--cursor CURSOR] [--follow]", "print the business's delivery status events", (*cli).statuses},
	{"key rotate", "--business ID", "move the business to a new signing key that its current key endorses; devices follow without asking", (*cli).keyRotate},
	{"key retire", "KEY_ID", "retire a signing key the business rotated away from", (*cli).keyRetire},
	{"key new", "--business ID", "make a signing key here for a business that lost its own, for the operator to put in place", (*cli).keyNew},
}

// dispatch parses the global flags, picks the command and runs it.
func (c *cli) dispatch(ctx context.Context, args []string) error {
	top := flag.NewFlagSet("herald", flag.ContinueOnError)
	top.SetOutput(io.Discard)
	c.cfg.bind(top)
	showVersion := top.Bool("version", false, "print the version and exit")
	if err := top.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			c.usage(c.stdout)
			return nil
		}
		return &usageError{msg: err.Error()}
	}
	if *showVersion {
		fmt.Fprintln(c.stdout, version.String("herald"))
		return nil
	}
	c.cfg.noteFlags(top)
	words := top.Args()
	if len(words) == 0 {
		return &usageError{msg: "no command"}
	}
	if words[0] == "help" {
		if len(words) == 1 {
			c.usage(c.stdout)
			return nil
		}
		// `herald help send` is `herald send -h`.
		words = append(words[1:], "-h")
	}
	cmd, rest := findCommand(words)
	if cmd == nil {
		if subs := groupCommands(words[0]); len(subs) > 0 {
			return &usageError{msg: fmt.Sprintf("%s: want one of: %s", words[0], strings.Join(subs, ", "))}
		}
		return &usageError{msg: fmt.Sprintf("unknown command %q", words[0])}
	}
	c.cmd = cmd
	fs := flag.NewFlagSet(cmd.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return cmd.run(c, ctx, fs, rest)
}

// findCommand matches the first one or two words against the command names.
func findCommand(words []string) (*command, []string) {
	for _, cmd := range commands {
		n := strings.Count(cmd.name, " ") + 1
		if len(words) >= n && strings.Join(words[:n], " ") == cmd.name {
			return cmd, words[n:]
		}
	}
	return nil, nil
}

// groupCommands lists the second words of group's commands.
func groupCommands(group string) []string {
	var subs []string
	for _, cmd := range commands {
		if sub, ok := strings.CutPrefix(cmd.name, group+" "); ok {
			subs = append(subs, sub)
		}
	}
	return subs
}

// parse parses a command's flags, then the global flags (which may come among the
// command's own), and returns the positional arguments. Flags and positional
// arguments may be mixed: `herald device block B1 --name phone` works as it reads.
func (c *cli) parse(fs *flag.FlagSet, args []string) ([]string, error) {
	own := map[string]bool{}
	fs.VisitAll(func(f *flag.Flag) { own[f.Name] = true })
	c.cfg.bind(fs)
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				c.commandUsage(c.stdout, fs, own)
				return nil, errHelpShown
			}
			return nil, &usageError{cmd: fs.Name(), msg: err.Error()}
		}
		rest := fs.Args()
		if len(rest) == 0 {
			break
		}
		// After "--", everything is positional.
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			positional = append(positional, rest...)
			break
		}
		positional = append(positional, rest[0])
		args = rest[1:]
	}
	c.cfg.noteFlags(fs)
	return positional, nil
}

// errHelpShown ends a command whose usage was asked for and printed.
var errHelpShown = errors.New("help shown")

// usageErr is a usage error of the command fs parses.
func usageErr(fs *flag.FlagSet, format string, a ...any) error {
	return &usageError{cmd: fs.Name(), msg: fmt.Sprintf(format, a...)}
}

// wantArgs checks the number of positional arguments.
func wantArgs(fs *flag.FlagSet, positional []string, names ...string) error {
	switch {
	case len(positional) > len(names):
		return usageErr(fs, "unexpected argument %q", positional[len(names)])
	case len(positional) < len(names):
		return usageErr(fs, "missing %s", strings.Join(names[len(positional):], " "))
	}
	return nil
}

// commandUsage prints one command's synopsis and its own flags.
func (c *cli) commandUsage(w io.Writer, fs *flag.FlagSet, own map[string]bool) {
	cmd := c.cmd
	fmt.Fprintf(w, "usage: herald %s %s\n\n%s.\n", cmd.name, cmd.args, upperFirst(cmd.summary))
	if len(own) > 0 {
		fmt.Fprintln(w, "\nflags:")
	}
	fs.VisitAll(func(f *flag.Flag) {
		if !own[f.Name] {
			return
		}
		name, help := flag.UnquoteUsage(f)
		line := "  --" + f.Name
		if name != "" {
			line += " " + name
		}
		fmt.Fprintf(w, "%s\n      %s", line, help)
		if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0s" {
			fmt.Fprintf(w, " (default %q)", f.DefValue)
		}
		fmt.Fprintln(w)
	})
	fmt.Fprintln(w, "\nThe global flags (--addr, --admin-addr, --tls, --ca, --token, --state, --json, …) work here too; see herald -h.")
}

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// usage prints the command list and the global settings.
func (c *cli) usage(w io.Writer) {
	fmt.Fprint(w, `Herald CLI: run the operator's, a device's and a business's side of Herald by hand.

usage: herald [global flags] COMMAND [flags] [args]

commands:
`)
	t := table(w)
	for _, cmd := range commands {
		fmt.Fprintf(t, "  %s\t%s\n", cmd.name, cmd.summary)
	}
	t.Flush()
	fmt.Fprintf(w, `
Run 'herald COMMAND -h' (or 'herald help COMMAND') for a command's flags.

global flags (also accepted after the command):
  --addr HOST:PORT   gateway address (HERALD_ADDR; default %s);
                     device commands default to the one they registered with
  --admin-addr HOST:PORT
                     the gateway's admin listener, where admin commands go
                     (HERALD_ADMIN_ADDR; default %s)
  --tls              use TLS. Default: TLS with --ca or --client-cert; otherwise
                     plaintext for loopback addresses (localhost, 127.0.0.0/8, ::1,
                     unix:) and TLS for any other; --tls=false forces plaintext.
  --ca FILE          verify the gateway's certificate against the CAs in this PEM
                     file instead of the system roots (HERALD_CA)
  --client-cert FILE, --client-key FILE
                     present this certificate to a gateway that asks for one, mutual
                     TLS (HERALD_CLIENT_CERT, HERALD_CLIENT_KEY)
  --token TOKEN      the credential the command needs (HERALD_TOKEN): an admin token
                     for admin, an API key for send, lookup, consent record, statuses.
                     HERALD_ADMIN_TOKEN and HERALD_API_KEY beat HERALD_TOKEN for their
                     commands, so one shell can hold both; --token beats them all.
                     Device commands use the token saved at registration.
  --state DIR        state directory (HERALD_STATE; default $XDG_CONFIG_HOME/herald or
                     ~/.config/herald), each file 0600: one per device name, holding
                     its token, private keys and the business keys it trusts; and
                     business-ID.key, the signing key send makes for a business the
                     first time and registers with the gateway, and key rotate
                     replaces (HERALD_SIGNING_KEY_FILE names another file instead)

send and key need the business's id as well as its API key: --business or
HERALD_BUSINESS_ID.
  --json             machine-readable output: each response as one line of JSON; an
                     error as {"error": {...}} on stderr
  --log-key KEY      the gateway's key log public key (HERALD_LOG_PUBLIC_KEY): devices
                     open only messages whose business key the log publishes, send
                     seals only to device keys it publishes, device audit reads it

  --version          print the version and exit

exit status: 0 done; 1 error; 2 wrong command line; 3 the message was (or would be)
rejected by policy (BLOCKED, NOT_OPTED_IN, OPTED_OUT, STALE_DEVICES, ...).
`, defaultAddr, defaultAdminAddr)
}

// categoryFlag defines --category.
func categoryFlag(fs *flag.FlagSet) *string {
	return fs.String("category", "", "message category, `CATEGORY` = "+enumChoices(heraldv1.Category_value, "CATEGORY_")+" (required)")
}

// parseCategory reads --category.
func parseCategory(fs *flag.FlagSet, s string) (heraldv1.Category, error) {
	v, ok := parseEnum(heraldv1.Category_value, "CATEGORY_", s)
	if !ok {
		return 0, usageErr(fs, "--category %q: want one of %s", s, enumChoices(heraldv1.Category_value, "CATEGORY_"))
	}
	return heraldv1.Category(v), nil
}

// consentFlags defines --in and --out, of which a command wants exactly one.
func consentFlags(fs *flag.FlagSet) (in, out *bool) {
	return fs.Bool("in", false, "opt in"), fs.Bool("out", false, "opt out")
}

// parseConsent reads --in and --out.
func parseConsent(fs *flag.FlagSet, in, out bool) (heraldv1.Consent, error) {
	switch {
	case in && !out:
		return heraldv1.Consent_CONSENT_OPTED_IN, nil
	case out && !in:
		return heraldv1.Consent_CONSENT_OPTED_OUT, nil
	}
	return 0, usageErr(fs, "want exactly one of --in and --out")
}

// consentText is a consent as a person says it.
func consentText(c heraldv1.Consent) string {
	switch c {
	case heraldv1.Consent_CONSENT_OPTED_IN:
		return "opted in"
	case heraldv1.Consent_CONSENT_OPTED_OUT:
		return "opted out"
	}
	return "default"
}
