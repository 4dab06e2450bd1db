package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"
	"google.golang.org/protobuf/types/known/durationpb"
)

// mustStatus is a gRPC error with details, as a gateway returns it.
func mustStatus(t *testing.T, c codes.Code, msg string, details ...protoadapt.MessageV1) error {
	t.Helper()
	st, err := status.New(c, msg).WithDetails(details...)
	if err != nil {
		t.Fatal(err)
	}
	return st.Err()
}

func TestErrorText(t *testing.T) {
	t.Parallel()
	badRequest := mustStatus(t, codes.InvalidArgument, "invalid message", &errdetails.BadRequest{
		FieldViolations: []*errdetails.BadRequest_FieldViolation{
			{Field: "message.recipient", Description: "not an E.164 phone number"},
			{Field: "message.kind", Description: "KIND_OFFER is not transactional", Reason: "KIND_CATEGORY_MISMATCH"},
		},
	})
	exhausted := mustStatus(t, codes.ResourceExhausted, "over the business's rate", &errdetails.RetryInfo{
		RetryDelay: durationpb.New(2500 * time.Millisecond),
	})
	denied := mustStatus(t, codes.Unauthenticated, "API key revoked", &errdetails.ErrorInfo{
		Reason:   "API_KEY_REVOKED",
		Domain:   "herald.dev",
		Metadata: map[string]string{"key_id": "k1", "business_id": "b1"},
	})
	other := mustStatus(t, codes.FailedPrecondition, "not yet", &errdetails.Help{
		Links: []*errdetails.Help_Link{{Description: "docs", Url: "https://example.com"}},
	})
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"bad request", badRequest, "INVALID_ARGUMENT: invalid message\n" +
			"  invalid message.recipient: not an E.164 phone number\n" +
			"  invalid message.kind: KIND_OFFER is not transactional (KIND_CATEGORY_MISMATCH)"},
		{"retry info", exhausted, "RESOURCE_EXHAUSTED: over the business's rate\n  retry after 2.5s"},
		{"error info, metadata in order", denied, "UNAUTHENTICATED: API key revoked\n  reason API_KEY_REVOKED (herald.dev) business_id=b1 key_id=k1"},
		{"wrapped", fmt.Errorf("lookup: %w", exhausted), "RESOURCE_EXHAUSTED: over the business's rate\n  retry after 2.5s"},
		{"a violation the message already says", mustStatus(t, codes.InvalidArgument, "invalid recipient: not E.164",
			&errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{{Field: "recipient", Description: "not E.164"}}}),
			"INVALID_ARGUMENT: invalid recipient: not E.164"},
		{"no details", status.Error(codes.Unavailable, "redis unreachable"), "UNAVAILABLE: redis unreachable"},
		{"cancelled is spelt as in google.rpc", status.Error(codes.Canceled, "bye"), "CANCELLED: bye"},
		{"not gRPC", errors.New("disk full"), "disk full"},
	}
	for _, tt := range tests {
		if got := errorText(tt.err); got != tt.want {
			t.Errorf("%s:\n got %q\nwant %q", tt.name, got, tt.want)
		}
	}
	// A detail the switch does not know is still shown.
	if got := errorText(other); !strings.Contains(got, "Help:") || !strings.Contains(got, "https://example.com") {
		t.Errorf("other detail: %q", got)
	}
}

func TestErrorJSON(t *testing.T) {
	t.Parallel()
	err := mustStatus(t, codes.InvalidArgument, "invalid message",
		&errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{{Field: "message.recipient", Description: "bad"}}},
		&errdetails.RetryInfo{RetryDelay: durationpb.New(time.Second)},
	)
	var out bytes.Buffer
	if err := jsonLine(&out, errorJSON(err)); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(out.String(), "\n"); n != 1 {
		t.Errorf("%d lines, want 1: %s", n, out.String())
	}
	var got struct {
		Error struct {
			Code    string           `json:"code"`
			Message string           `json:"message"`
			Details []map[string]any `json:"details"`
		} `json:"error"`
	}
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	e := got.Error
	if e.Code != "INVALID_ARGUMENT" || e.Message != "invalid message" || len(e.Details) != 2 ||
		e.Details[0]["@type"] != "type.googleapis.com/google.rpc.BadRequest" ||
		e.Details[1]["retryDelay"] != "1s" {
		t.Errorf("got %s", out.String())
	}
}

func TestJSONLineOfAResponse(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	err := jsonLine(&out, &heraldv1.SendResponse{Result: &heraldv1.Result{Outcome: heraldv1.Outcome_OUTCOME_BLOCKED}})
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Result struct {
			Outcome   string  `json:"outcome"`
			MessageID *string `json:"message_id"`
			Duplicate *bool   `json:"duplicate"`
		} `json:"result"`
	}
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	// Unset fields are present, so that a script can rely on the keys.
	if got.Result.Outcome != "OUTCOME_BLOCKED" || got.Result.MessageID == nil || got.Result.Duplicate == nil {
		t.Errorf("got %s", out.String())
	}
}

func TestCleanKeepsTerminalsSafe(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"Your order\tshipped.\nThanks!", "Your order\tshipped.\nThanks!"},
		{"héllo ✓ 日本", "héllo ✓ 日本"},
		{"\x1b[2J\x1b[Hgotcha", `\x1b[2J\x1b[Hgotcha`},
		{"a\rb", `a\x0db`},
		{"evil\u202egnp.exe", `evil\u202egnp.exe`},
		{"\u009b31m", `\x9b31m`},
	}
	for _, tt := range tests {
		if got := clean(tt.in); got != tt.want {
			t.Errorf("clean(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestParseEnum(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want heraldv1.Kind
		ok   bool
	}{
		{"receipt", heraldv1.Kind_KIND_RECEIPT, true},
		{"delivery-status", heraldv1.Kind_KIND_DELIVERY_STATUS, true},
		{"delivery_status", heraldv1.Kind_KIND_DELIVERY_STATUS, true},
		{"KIND_ACCOUNT_UPDATE", heraldv1.Kind_KIND_ACCOUNT_UPDATE, true},
		{"Offer", heraldv1.Kind_KIND_OFFER, true},
		{"unspecified", 0, false},
		{"", 0, false},
		{"coupon", 0, false},
	}
	for _, tt := range tests {
		v, ok := parseEnum(heraldv1.Kind_value, "KIND_", tt.in)
		if heraldv1.Kind(v) != tt.want && ok || ok != tt.ok {
			t.Errorf("parseEnum(%q) = %v, %v; want %v, %v", tt.in, heraldv1.Kind(v), ok, tt.want, tt.ok)
		}
	}
	if got := enumChoices(heraldv1.Category_value, "CATEGORY_"); got != "marketing|transactional" {
		t.Errorf("enumChoices = %q", got)
	}
}
