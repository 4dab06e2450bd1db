package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// jsonLine writes v as one line of JSON: a proto message in its canonical JSON
// mapping with the .proto field names and every field present (so scripts can rely
// on a key being there), anything else with encoding/json.
func jsonLine(w io.Writer, v any) error {
	var b []byte
	var err error
	if m, ok := v.(proto.Message); ok {
		b, err = protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true}.Marshal(m)
	} else {
		b, err = json.Marshal(v)
	}
	if err != nil {
		return err
	}
	// protojson varies its spacing on purpose; one compact line is what `jq` and
	// line-oriented tools expect from a stream.
	var line bytes.Buffer
	if err := json.Compact(&line, b); err != nil {
		return err
	}
	line.WriteByte('\n')
	_, err = w.Write(line.Bytes())
	return err
}

// table is an aligned, human-readable table or list of "key value" lines.
func table(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
}

// enumWord is an enum value name without its type prefix, e.g. BLOCKED for
// OUTCOME_BLOCKED: the word the DESIGN and the business's logs use.
func enumWord(name, prefix string) string {
	return strings.TrimPrefix(name, prefix)
}

// flagWord is an enum value as its flag spells it, e.g. delivery-status for
// KIND_DELIVERY_STATUS.
func flagWord(name, prefix string) string {
	return strings.ReplaceAll(strings.ToLower(enumWord(name, prefix)), "_", "-")
}

// parseEnum accepts an enum value as the flag spells it (delivery-status) or by its
// full or short proto name (KIND_DELIVERY_STATUS, delivery_status). The zero value,
// UNSPECIFIED, is never accepted: every enum flag is there to say something.
func parseEnum(values map[string]int32, prefix, s string) (int32, bool) {
	name := strings.ToUpper(strings.ReplaceAll(s, "-", "_"))
	if !strings.HasPrefix(name, prefix) {
		name = prefix + name
	}
	v, ok := values[name]
	return v, ok && v != 0
}

// enumChoices lists the accepted flag words of an enum, for usage errors.
func enumChoices(values map[string]int32, prefix string) string {
	var words []string
	for _, name := range slices.Sorted(maps.Keys(values)) {
		if values[name] != 0 {
			words = append(words, flagWord(name, prefix))
		}
	}
	return strings.Join(words, "|")
}

// timeText shows a timestamp in local time, or "-" when it is unset.
func timeText(ts *timestamppb.Timestamp) string {
	if ts == nil {
		return "-"
	}
	return ts.AsTime().Local().Format(time.RFC3339)
}

// clean makes text from a third party (a business's message or display name) safe
// to print on a terminal: each control character, which could move the cursor or
// rewrite earlier lines, and each bidi control, which could make text read in another
// order than it is, is shown as a visible \x.. or \u.... escape instead.
// Newlines and tabs are kept.
func clean(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == '\n' || r == '\t' || !unicode.IsControl(r) && !unicode.Is(unicode.Bidi_Control, r):
			b.WriteRune(r)
		case r < 0x100:
			fmt.Fprintf(&b, `\x%02x`, r)
		default:
			fmt.Fprintf(&b, `\u%04x`, r)
		}
	}
	return b.String()
}

// errorText is an error as the user reads it on stderr. A gRPC status shows its
// canonical code name (as in DESIGN.md) and message, then one line per detail that
// helps decide what to do next: which fields are wrong, how long to wait, why access
// was refused.
func errorText(err error) string {
	text := statusText(err)
	if h := hintOf(err); h != "" {
		text += "\n  hint: " + h
	}
	return text
}

// statusText is errorText without the hint.
func statusText(err error) string {
	st, ok := grpcStatus(err)
	if !ok {
		return err.Error()
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %s", code.Code(st.Code()), st.Message())
	for _, d := range st.Details() {
		switch d := d.(type) {
		case *errdetails.BadRequest:
			for _, v := range d.GetFieldViolations() {
				line := fmt.Sprintf("invalid %s: %s", v.GetField(), v.GetDescription())
				if v.GetReason() != "" {
					line += fmt.Sprintf(" (%s)", v.GetReason())
				}
				// A gateway may put a lone violation in the message as well; once is enough.
				if line != st.Message() {
					b.WriteString("\n  " + line)
				}
			}
		case *errdetails.RetryInfo:
			fmt.Fprintf(&b, "\n  retry after %s", d.GetRetryDelay().AsDuration())
		case *errdetails.ErrorInfo:
			fmt.Fprintf(&b, "\n  reason %s", d.GetReason())
			if d.GetDomain() != "" {
				fmt.Fprintf(&b, " (%s)", d.GetDomain())
			}
			md := d.GetMetadata()
			for _, k := range slices.Sorted(maps.Keys(md)) {
				fmt.Fprintf(&b, " %s=%s", k, md[k])
			}
		case proto.Message:
			// Any other google.rpc detail still says something; show it as is.
			fmt.Fprintf(&b, "\n  %s: %s", d.ProtoReflect().Descriptor().Name(),
				prototext.MarshalOptions{}.Format(d))
		case error:
			// A detail whose type this binary does not know.
			fmt.Fprintf(&b, "\n  detail: %v", d)
		}
	}
	return b.String()
}

// errorJSON is an error for --json: the code by its canonical name, the message, and
// the details in their JSON mapping (each with its "@type").
func errorJSON(err error) any {
	type body struct {
		Code    string            `json:"code,omitempty"`
		Message string            `json:"message"`
		Details []json.RawMessage `json:"details,omitempty"`
		Hint    string            `json:"hint,omitempty"`
	}
	st, ok := grpcStatus(err)
	if !ok {
		return map[string]body{"error": {Message: err.Error(), Hint: hintOf(err)}}
	}
	e := body{Code: code.Code(st.Code()).String(), Message: st.Message(), Hint: hintOf(err)}
	for _, a := range st.Proto().GetDetails() {
		if d, err := protojson.Marshal(a); err == nil {
			e.Details = append(e.Details, d)
		}
	}
	return map[string]body{"error": e}
}

// grpcStatus finds the gRPC status in err, also when a command wrapped it. Unlike
// status.FromError it keeps the server's own message.
func grpcStatus(err error) (*status.Status, bool) {
	var se interface{ GRPCStatus() *status.Status }
	if !errors.As(err, &se) {
		return nil, false
	}
	st := se.GRPCStatus()
	return st, st != nil
}

// result prints a command's response: with --json as the response itself, otherwise
// as human writes it, aligned on tabs.
func (c *cli) result(resp proto.Message, human func(w io.Writer)) error {
	if c.cfg.JSON {
		return jsonLine(c.stdout, resp)
	}
	t := table(c.stdout)
	human(t)
	return t.Flush()
}
