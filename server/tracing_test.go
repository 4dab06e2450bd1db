package server

import (
	"context"
	"fmt"
	"strings"
	"testing"

	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
)

// TestTracing: a Send makes a server span with the method and status, and a span for
// its Redis round trip beneath it; a caller's trace context is linked, not continued.
// No span's name, attributes, events, links or status hold the phone number, a
// token or the ciphertext, for an accepted Send or a refused one.
func TestTracing(t *testing.T) {
	t.Parallel()
	spans := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans))
	t.Cleanup(func() { tp.Shutdown(context.Background()) })
	g := startGateway(t, func(c *Config) { c.TracerProvider = tp })
	_, key := g.newBusiness("Acme")
	phone := g.register(alice)
	spans.Reset()

	m := msg(alice, tx, rcpt, "m-1", "the body", phone)
	// A caller's trace context, as an SDK with tracing sends it.
	caller := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{1, 2, 3}, SpanID: trace.SpanID{4, 5, 6},
		TraceFlags: trace.FlagsSampled})
	ctx := metadata.AppendToOutgoingContext(as(key), "traceparent",
		fmt.Sprintf("00-%s-%s-01", caller.TraceID(), caller.SpanID()))
	if r, err := g.messaging.Send(ctx, &heraldv1.SendRequest{Message: m}); err != nil || r.Result.Outcome != heraldv1.Outcome_OUTCOME_ACCEPTED {
		t.Fatalf("send: %v, %v", r, err)
	}
	// A key of the right shape, so that the call gets as far as the interceptors (a
	// malformed one is refused by the transport's tap, before there is an RPC to trace).
	stolen := key[:len(key)-4] + "zzzz"
	_, err := g.messaging.Send(as(stolen), &heraldv1.SendRequest{Message: m})
	requireCode(t, err, codes.Unauthenticated, "")

	got := spans.GetSpans()
	for _, s := range got {
		t.Logf("span %s %v %v", s.Name, s.Attributes, s.Status)
	}
	var sends []tracetest.SpanStub
	for _, s := range got {
		if s.Name == "herald.v1.MessagingService/Send" {
			sends = append(sends, s)
		}
	}
	if len(sends) != 2 {
		t.Fatalf("%d Send spans, want 2; spans: %v", len(sends), names(got))
	}
	send := sends[0]
	if send.SpanKind != trace.SpanKindServer {
		t.Errorf("the Send span's kind is %v", send.SpanKind)
	}
	if send.SpanContext.TraceID() == caller.TraceID() || send.Parent.IsValid() {
		t.Errorf("the Send span continues the caller's trace; want a new root")
	}
	if len(send.Links) != 1 || send.Links[0].SpanContext.TraceID() != caller.TraceID() {
		t.Errorf("the Send span's links = %v, want the caller's span", send.Links)
	}
	attrs := map[string]string{}
	for _, a := range send.Attributes {
		attrs[string(a.Key)] = a.Value.String()
	}
	if attrs["rpc.method"] != "herald.v1.MessagingService/Send" || attrs["rpc.response.status_code"] != "OK" {
		t.Errorf("the Send span's attributes = %v", attrs)
	}
	var redisUnder int
	for _, s := range got {
		if strings.HasPrefix(s.Name, "redis ") && s.Parent.SpanID() == send.SpanContext.SpanID() {
			redisUnder++
		}
	}
	if redisUnder == 0 {
		t.Errorf("no Redis span under the Send span; spans: %v", names(got))
	}

	secrets := []string{alice, strings.TrimPrefix(alice, "+"), key, phone.token, stolen}
	for _, e := range m.Envelopes {
		secrets = append(secrets, renderings(e.Ciphertext)...)
	}
	for _, s := range got {
		text := []string{s.Name, s.Status.Description}
		for _, a := range s.Attributes {
			text = append(text, string(a.Key), a.Value.String())
		}
		for _, e := range s.Events {
			text = append(text, e.Name)
			for _, a := range e.Attributes {
				text = append(text, string(a.Key), a.Value.String())
			}
		}
		for _, l := range s.Links {
			for _, a := range l.Attributes {
				text = append(text, a.Value.String())
			}
		}
		joined := strings.Join(text, "\n")
		for _, secret := range secrets {
			if strings.Contains(joined, secret) {
				t.Errorf("span %s holds %.40q", s.Name, secret)
			}
		}
	}
}

func names(spans tracetest.SpanStubs) []string {
	var out []string
	for _, s := range spans {
		out = append(out, s.Name)
	}
	return out
}
