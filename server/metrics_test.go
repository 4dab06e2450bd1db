package server

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/grpc/codes"
	grpcstatus "google.golang.org/grpc/status"
)

// scraper reads a gateway's metrics over HTTP, as Prometheus does.
type scraper struct {
	t   *testing.T
	url string
}

// serveMetrics serves the gateway's MetricsHandler at /metrics on a loopback listener
// of its own, as heraldd --metrics-listen does.
func serveMetrics(t *testing.T, g *gateway) *scraper {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", g.srv.MetricsHandler())
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go hs.Serve(lis)
	t.Cleanup(func() { hs.Close() })
	return &scraper{t: t, url: "http://" + lis.Addr().String() + "/metrics"}
}

// samples are one scrape: each sample's value by its name and labels, written
// name{k=v,…} with the labels in name order (a histogram's as name_count and
// name_sum).
type samples map[string]float64

func (s *scraper) scrape() samples {
	s.t.Helper()
	resp, err := http.Get(s.url)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		s.t.Fatalf("GET /metrics: %s", resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		s.t.Fatalf("parse /metrics: %v", err)
	}
	out := samples{}
	for name, f := range fams {
		for _, m := range f.GetMetric() {
			var ls []string
			for _, l := range m.GetLabel() {
				ls = append(ls, l.GetName()+"="+l.GetValue())
			}
			slices.Sort(ls)
			labels := "{" + strings.Join(ls, ",") + "}"
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				out[name+labels] = m.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				out[name+labels] = m.GetGauge().GetValue()
			case dto.MetricType_HISTOGRAM:
				out[name+"_count"+labels] = float64(m.GetHistogram().GetSampleCount())
				out[name+"_sum"+labels] = m.GetHistogram().GetSampleSum()
			}
		}
	}
	return out
}

// series names a sample: labels are given as k=v in name order.
func series(name string, labels ...string) string {
	return name + "{" + strings.Join(labels, ",") + "}"
}

const (
	sendName      = "method=herald.v1.MessagingService/Send"
	sendBatchName = "method=herald.v1.MessagingService/SendBatch"
	receiveName   = "method=herald.v1.RecipientService/Receive"
)

// TestMetricsMove scrapes /metrics over HTTP from a gateway's metrics listener after a
// Send and a SendBatch, refusals (a BLOCKED outcome, an INVALID entry of the batch, a
// Send over the business's rate, a call with a bad API key) and a Receive, and finds each named series moved by exactly what was
// done.
func TestMetricsMove(t *testing.T) {
	t.Parallel()
	g := startGateway(t)
	m := serveMetrics(t, g)
	before := m.scrape()
	for _, name := range []string{"go_goroutines{}", "herald_outbox_index_recipients{}", "herald_rate_refused_total{}",
		series("herald_send_messages_total", sendName, "outcome=BLOCKED")} {
		if _, ok := before[name]; !ok {
			t.Errorf("a new gateway's metrics lack %s", name)
		}
	}

	biz, key := g.newBusiness("Acme")
	g.setLimits(biz, 1e6, 1e6, 10) // an allowance: each person new to Acme takes a unit
	phone, bobPhone := g.register(alice), g.register(bob)
	if _, err := g.recipient.Block(as(bobPhone.token), &heraldv1.BlockRequest{BusinessId: biz}); err != nil {
		t.Fatal(err)
	}
	if r := g.send(key, msg(alice, tx, rcpt, "m-1", "hello", phone)); r.Outcome != heraldv1.Outcome_OUTCOME_ACCEPTED {
		t.Fatal(r)
	}
	if r := g.send(key, msg(bob, tx, rcpt, "m-2", "hello", bobPhone)); r.Outcome != heraldv1.Outcome_OUTCOME_BLOCKED {
		t.Fatal(r)
	}
	batch, err := g.messaging.SendBatch(as(key), &heraldv1.SendBatchRequest{Messages: []*heraldv1.Message{
		msg(alice, tx, rcpt, "b-1", "hello", phone), {Recipient: "not a number"}}})
	if err != nil || batch.Results[0].Outcome != heraldv1.Outcome_OUTCOME_ACCEPTED || batch.Results[1].Outcome != heraldv1.Outcome_OUTCOME_INVALID {
		t.Fatalf("batch: %v, %v", batch, err)
	}
	slow, slowKey := g.newBusiness("Slow")
	g.setLimits(slow, 0.001, 1, 0) // one message, then the next in 1000 s
	if r := g.send(slowKey, msg(alice, tx, rcpt, "s-1", "hello", phone)); r.Outcome != heraldv1.Outcome_OUTCOME_ACCEPTED {
		t.Fatal(r)
	}
	_, err = g.messaging.Send(as(slowKey), &heraldv1.SendRequest{Message: msg(alice, tx, rcpt, "s-2", "hello", phone)})
	if grpcstatus.Code(err) != codes.ResourceExhausted {
		t.Fatalf("over the rate: %v, want RESOURCE_EXHAUSTED", err)
	}
	_, err = g.messaging.Send(as("hk_not-a-key"), &heraldv1.SendRequest{Message: msg(alice, tx, rcpt, "x-1", "hello", phone)})
	if grpcstatus.Code(err) != codes.Unauthenticated {
		t.Fatalf("bad API key: %v, want UNAUTHENTICATED", err)
	}
	r := g.receive(phone)
	r.next()
	r.next()

	during := m.scrape()
	moved := func(s samples, name string, want float64) {
		t.Helper()
		if got := s[name] - before[name]; got != want {
			t.Errorf("%s moved by %v, want %v", name, got, want)
		}
	}
	atLeast := func(s samples, name string, want float64) {
		t.Helper()
		if got := s[name] - before[name]; got < want {
			t.Errorf("%s moved by %v, want at least %v", name, got, want)
		}
	}
	moved(during, series("herald_rpc_requests_total", "code=OK", sendName), 3)
	moved(during, series("herald_rpc_requests_total", "code=ResourceExhausted", sendName), 1)
	moved(during, series("herald_rpc_requests_total", "code=Unauthenticated", sendName), 1)
	moved(during, series("herald_rpc_duration_seconds_count", sendName), 5)
	moved(during, series("herald_send_messages_total", sendName, "outcome=ACCEPTED"), 2)
	moved(during, series("herald_send_messages_total", sendName, "outcome=BLOCKED"), 1)
	moved(during, series("herald_send_messages_total", sendName, "outcome=RATE_LIMITED"), 1)
	moved(during, series("herald_send_messages_total", sendName, "outcome=UNAUTHENTICATED"), 1)
	moved(during, series("herald_send_messages_total", sendBatchName, "outcome=ACCEPTED"), 1)
	moved(during, series("herald_send_messages_total", sendBatchName, "outcome=INVALID"), 1)
	moved(during, "herald_rate_refused_total{}", 1)
	atLeast(during, "herald_rate_leases_total{}", 2)        // one per business at least
	atLeast(during, "herald_rate_leased_tokens_total{}", 4) // what the four admitted spent
	moved(during, "herald_new_recipient_leases_total{}", 2)
	moved(during, series("herald_new_recipient_units_total", "result=granted"), 2) // alice and bob, new to Acme
	moved(during, series("herald_new_recipient_units_total", "result=refused"), 0)
	atLeast(during, series("herald_redis_duration_seconds_count", "op=command"), 1)
	atLeast(during, series("herald_redis_duration_seconds_count", "op=pipeline"), 3) // an admission each
	atLeast(during, "herald_mailbox_depth_count{}", 1)
	atLeast(during, "herald_mailbox_depth_sum{}", 2) // the first fetch found both messages queued
	moved(during, series("herald_rpc_streams_open", receiveName), 1)

	// The stream ends: it is counted, timed, and no longer open.
	r.cancel()
	deadline := time.Now().Add(10 * time.Second)
	var after samples
	for {
		after = m.scrape()
		if after[series("herald_rpc_streams_open", receiveName)] == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	moved(after, series("herald_rpc_streams_open", receiveName), 0)
	// One scrape is no snapshot: the registry gathers its collectors concurrently, so
	// the scrape that saw the gauge fall may have read the histogram before the call
	// was timed. The gateway times a stream before it stops counting it open, so a
	// scrape begun after the gauge was seen at zero must see it timed and counted.
	after = m.scrape()
	moved(after, series("herald_rpc_duration_seconds_count", receiveName), 1)
	var ended float64
	for name, v := range after {
		if strings.HasPrefix(name, "herald_rpc_requests_total{") && strings.Contains(name, receiveName) {
			ended += v - before[name]
		}
	}
	if ended != 1 {
		t.Errorf("%v Receive calls counted finished, want 1", ended)
	}
}

// TestMetricsAreTheGatewaysOwn: two gateways in one process count apart.
func TestMetricsAreTheGatewaysOwn(t *testing.T) {
	t.Parallel()
	a, b := startGateway(t), startGateway(t)
	ma, mb := serveMetrics(t, a), serveMetrics(t, b)
	_, err := a.messaging.Send(as("hk_not-a-key"), &heraldv1.SendRequest{Message: msg(alice, tx, rcpt, "x-1", "hello")})
	if grpcstatus.Code(err) != codes.Unauthenticated {
		t.Fatalf("bad API key: %v", err)
	}
	name := series("herald_rpc_requests_total", "code=Unauthenticated", sendName)
	if got, other := ma.scrape()[name], mb.scrape()[name]; got != 1 || other != 0 {
		t.Fatalf("%s: %v on the gateway called, %v on the other; want 1 and 0", name, got, other)
	}
}

// TestMadeUpMethodsMakeNoSeries: calls to methods no service has, refused before any
// credential is checked, leave the metrics' series as they were: a caller cannot grow
// the gateway's memory by making up names.
func TestMadeUpMethodsMakeNoSeries(t *testing.T) {
	t.Parallel()
	g := startGateway(t)
	m := serveMetrics(t, g)
	before := len(m.scrape())
	for i := range 20 {
		err := g.conn.Invoke(context.Background(), fmt.Sprintf("/herald.v1.MessagingService/MadeUp%d", i),
			&heraldv1.SendRequest{}, &heraldv1.SendResponse{})
		if grpcstatus.Code(err) == codes.OK {
			t.Fatal("a made-up method answered")
		}
	}
	if after := len(m.scrape()); after != before {
		t.Fatalf("%d series after 20 calls to made-up methods, %d before", after, before)
	}
}

// TestABatchRefusedWholeCountsWhatWasRead: a SendBatch refused whole after it was read
// counts each of its messages under the refusal; one refused before it was read (no
// credentials) counts once, since nobody read its messages.
func TestABatchRefusedWholeCountsWhatWasRead(t *testing.T) {
	t.Parallel()
	g := startGateway(t)
	m := serveMetrics(t, g)
	_, key := g.newBusiness("Acme")
	before := m.scrape()
	tooMany := &heraldv1.SendBatchRequest{}
	for range maxBatch + 1 {
		tooMany.Messages = append(tooMany.Messages, &heraldv1.Message{})
	}
	_, err := g.messaging.SendBatch(as(key), tooMany)
	requireCode(t, err, codes.InvalidArgument, "messages")
	_, err = g.messaging.SendBatch(context.Background(), &heraldv1.SendBatchRequest{Messages: tooMany.Messages[:3]})
	requireCode(t, err, codes.Unauthenticated, "")
	after := m.scrape()
	for _, c := range []struct {
		outcome string
		want    float64
	}{{"outcome=INVALID_ARGUMENT", maxBatch + 1}, {"outcome=UNAUTHENTICATED", 1}} {
		name := series("herald_send_messages_total", sendBatchName, c.outcome)
		if got := after[name] - before[name]; got != c.want {
			t.Errorf("%s moved by %v, want %v", name, got, c.want)
		}
	}
}
