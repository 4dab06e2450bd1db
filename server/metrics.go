package server

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/heraldhq/herald/admission"
	"github.com/heraldhq/herald/delivery"
	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	"github.com/heraldhq/herald/ratelimit"
	"github.com/heraldhq/herald/webhook"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Methods whose messages are counted by outcome.
const (
	sendMethod      = messagingPrefix + "Send"
	sendBatchMethod = messagingPrefix + "SendBatch"
)

// metrics are a gateway's Prometheus metrics, in a registry of its own (so that one
// process can run several gateways, as tests do), served by Server.MetricsHandler.
// The README's Metrics section lists them; keep the two in step.
//
// Nothing here costs a Redis round trip: counts are taken from calls the gateway makes
// anyway, and depths come back with them.
type metrics struct {
	registry *prometheus.Registry

	rpcs     *prometheus.CounterVec   // method, code
	duration *prometheus.HistogramVec // method
	streams  *prometheus.GaugeVec     // method
	// methods holds each method's children, resolved at its first call: a call costs
	// a map lookup rather than hashing its labels.
	methods sync.Map // full method -> *methodMetrics

	messages *prometheus.CounterVec // method, outcome
	// outcomes are messages' children for each outcome a message can have, by
	// method, resolved once so that counting one costs a map lookup.
	outcomes map[string]map[heraldv1.Outcome]prometheus.Counter
	// duplicates are the children for an ACCEPTED duplicate, by method.
	duplicates map[string]prometheus.Counter

	redis       *prometheus.HistogramVec // op
	redisErrors *prometheus.CounterVec   // op

	// Handed to the domain packages, which count into them (they import no Prometheus).
	admission admission.Metrics
	delivery  delivery.Metrics
}

// namespace prefixes every Herald metric.
const namespace = "herald"

func newMetrics() *metrics {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	f := func(c prometheus.Collector) { reg.MustRegister(c) }
	m := &metrics{registry: reg}

	m.rpcs = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Subsystem: "rpc", Name: "requests_total",
		Help: "RPCs finished, by method and gRPC status code; unauthenticated calls included."}, []string{"method", "code"})
	m.duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: namespace, Subsystem: "rpc", Name: "duration_seconds",
		Help:    "How long RPCs took, by method: a unary call's latency, a stream's lifetime.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600}},
		[]string{"method"})
	m.streams = prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: namespace, Subsystem: "rpc", Name: "streams_open",
		Help: "Streams open now (Receive, StreamStatus), by method."}, []string{"method"})
	m.messages = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Subsystem: "send", Name: "messages_total",
		Help: "Messages of Send and SendBatch, by what became of each: its outcome (ACCEPTED, BLOCKED, RATE_LIMITED, …; " +
			"DUPLICATE for an accepted repeat), or for a call refused whole, the reason it was refused (RATE_LIMITED, " +
			"STORAGE_UNAVAILABLE, OUTCOME_UNKNOWN, UNAUTHENTICATED, …) or else its status code (INVALID_ARGUMENT, …)."},
		[]string{"method", "outcome"})
	m.outcomes = map[string]map[heraldv1.Outcome]prometheus.Counter{}
	m.duplicates = map[string]prometheus.Counter{}
	for _, method := range []string{sendMethod, sendBatchMethod} {
		name := methodName(method)
		m.outcomes[method] = map[heraldv1.Outcome]prometheus.Counter{}
		for v, o := range heraldv1.Outcome_name {
			if heraldv1.Outcome(v) != heraldv1.Outcome_OUTCOME_UNSPECIFIED {
				m.outcomes[method][heraldv1.Outcome(v)] = m.messages.WithLabelValues(name, strings.TrimPrefix(o, "OUTCOME_"))
			}
		}
		m.duplicates[method] = m.messages.WithLabelValues(name, "DUPLICATE")
	}

	m.redis = prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: namespace, Subsystem: "redis", Name: "duration_seconds",
		Help:    "Redis round trips, by op: command (one command or script) or pipeline (counted once, whatever it holds).",
		Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}}, []string{"op"})
	m.redisErrors = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Subsystem: "redis", Name: "errors_total",
		Help: "Redis round trips that failed (unreachable, timed out, or an error reply), by op."}, []string{"op"})

	counter := func(subsystem, name, help string) prometheus.Counter {
		c := prometheus.NewCounter(prometheus.CounterOpts{Namespace: namespace, Subsystem: subsystem, Name: name, Help: help})
		f(c)
		return c
	}
	units := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Subsystem: "new_recipient", Name: "units_total",
		Help: "Units of new-recipient allowance asked for, by result: granted (a person new to the business started), " +
			"or refused (the business's allowance for the window was spent)."}, []string{"result"})
	m.admission = admission.Metrics{
		Rate: ratelimit.Metrics{
			Leases: counter("rate", "leases_total", "Round trips that leased business rate tokens from Redis "+
				"(the local stock ran low; none per message)."),
			Leased:  counter("rate", "leased_tokens_total", "Business rate tokens leased from Redis."),
			Refused: counter("rate", "refused_total", "Messages refused over their business's rate."),
		},
		AllowanceLeases: counter("new_recipient", "leases_total", "Round trips that leased new-recipient allowance "+
			"(only for people new to a business)."),
		AllowanceGranted: units.WithLabelValues("granted"),
		AllowanceRefused: units.WithLabelValues("refused"),
	}
	outbox := prometheus.NewGauge(prometheus.GaugeOpts{Namespace: namespace, Subsystem: "outbox", Name: "index_recipients",
		Help: "Recipients with status events not yet forwarded to their businesses, for all gateways together, " +
			"sampled at each outbox sweep (every 2 s); near zero unless forwarding falls behind."})
	mailbox := prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: namespace, Subsystem: "mailbox", Name: "depth",
		Help:    "Deliveries a device's mailbox holds (queued, unacknowledged), sampled at each fetch of its Receive stream.",
		Buckets: []float64{0, 1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 5000, 10000}})
	m.delivery = delivery.Metrics{OutboxIndex: outbox, Mailbox: mailbox}

	for _, c := range []prometheus.Collector{m.rpcs, m.duration, m.streams, m.messages, m.redis, m.redisErrors, units, outbox, mailbox} {
		f(c)
	}
	return m
}

// MetricsHandler serves the gateway's metrics in the Prometheus exposition format:
// mount it at /metrics on a listener of its own (heraldd --metrics-listen). The
// metrics name methods, outcomes and status codes, never a business, a person or a
// token.
func (s *Server) MetricsHandler() http.Handler {
	return promhttp.HandlerFor(s.metrics.registry, promhttp.HandlerOpts{Registry: s.metrics.registry})
}

// methodName is a full gRPC method as the metrics name it: without the leading slash.
func methodName(fullMethod string) string { return strings.TrimPrefix(fullMethod, "/") }

// methodMetrics are one method's children of the per-RPC metrics.
type methodMetrics struct {
	name     string
	ok       prometheus.Counter // rpcs with code OK, the common case
	duration prometheus.Observer
}

// method returns fullMethod's children. Only registered methods reach the
// interceptors, and the tap counts no other, so there are as many as the services
// have methods.
func (m *metrics) method(fullMethod string) *methodMetrics {
	if v, ok := m.methods.Load(fullMethod); ok {
		return v.(*methodMetrics)
	}
	name := methodName(fullMethod)
	v, _ := m.methods.LoadOrStore(fullMethod, &methodMetrics{name: name,
		ok: m.rpcs.WithLabelValues(name, codes.OK.String()), duration: m.duration.WithLabelValues(name)})
	return v.(*methodMetrics)
}

// call counts a finished RPC.
func (m *metrics) call(method string, err error, took time.Duration) {
	mm := m.method(method)
	if code := status.Code(err); code == codes.OK {
		mm.ok.Inc()
	} else {
		m.rpcs.WithLabelValues(mm.name, code.String()).Inc()
	}
	mm.duration.Observe(took.Seconds())
}

// sent counts the messages of a finished Send or SendBatch by outcome.
func (m *metrics) sent(method string, read int, resp any, err error) {
	if err != nil {
		// A call refused whole counts its messages if it was read that far (read,
		// from the handler), else once: a call refused before its request was read
		// (most are) has no messages anyone looked at.
		m.messages.WithLabelValues(methodName(method), refusal(err)).Add(float64(max(read, 1)))
		return
	}
	switch r := resp.(type) {
	case *heraldv1.SendResponse:
		m.outcome(method, r.GetResult())
	case *heraldv1.SendBatchResponse:
		for _, res := range r.GetResults() {
			m.outcome(method, res)
		}
	}
}

func (m *metrics) outcome(method string, r *heraldv1.Result) {
	if r.GetDuplicate() {
		m.duplicates[method].Inc()
	} else if c, ok := m.outcomes[method][r.GetOutcome()]; ok {
		c.Inc()
	}
}

// refusal names why a call was refused whole: its ErrorInfo reason, or its code.
func refusal(err error) string {
	st := status.Convert(err)
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetReason() != "" {
			return info.GetReason()
		}
	}
	return codeNames[st.Code()]
}

// codeNames are status codes as the API's enums spell them.
var codeNames = map[codes.Code]string{
	codes.OK: "OK", codes.Canceled: "CANCELLED", codes.Unknown: "UNKNOWN", codes.InvalidArgument: "INVALID_ARGUMENT",
	codes.DeadlineExceeded: "DEADLINE_EXCEEDED", codes.NotFound: "NOT_FOUND", codes.AlreadyExists: "ALREADY_EXISTS",
	codes.PermissionDenied: "PERMISSION_DENIED", codes.ResourceExhausted: "RESOURCE_EXHAUSTED",
	codes.FailedPrecondition: "FAILED_PRECONDITION", codes.Aborted: "ABORTED", codes.OutOfRange: "OUT_OF_RANGE",
	codes.Unimplemented: "UNIMPLEMENTED", codes.Internal: "INTERNAL", codes.Unavailable: "UNAVAILABLE",
	codes.DataLoss: "DATA_LOSS", codes.Unauthenticated: "UNAUTHENTICATED",
}

// redisHook times every Redis round trip of the gateway's client (a pipeline once)
// and, when tracing, makes each made while serving a traced RPC a span of it.
type redisHook struct {
	command, pipeline             prometheus.Observer
	commandErrors, pipelineErrors prometheus.Counter
	tracing                       *tracing // nil without tracing
}

func (m *metrics) redisHook(t *tracing) *redisHook {
	return &redisHook{command: m.redis.WithLabelValues("command"), pipeline: m.redis.WithLabelValues("pipeline"),
		commandErrors: m.redisErrors.WithLabelValues("command"), pipelineErrors: m.redisErrors.WithLabelValues("pipeline"),
		tracing: t}
}

func (h *redisHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *redisHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		end := noSpan
		if h.tracing != nil {
			ctx, end = h.tracing.redisSpan(ctx, cmd.Name(), 1)
		}
		start := time.Now()
		err := next(ctx, cmd)
		h.command.Observe(time.Since(start).Seconds())
		failed(h.commandErrors, err)
		end(err)
		return err
	}
}

func (h *redisHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		end := noSpan
		if h.tracing != nil {
			ctx, end = h.tracing.redisSpan(ctx, "pipeline", len(cmds))
		}
		start := time.Now()
		err := next(ctx, cmds)
		h.pipeline.Observe(time.Since(start).Seconds())
		failed(h.pipelineErrors, err)
		end(err)
		return err
	}
}

// failed counts err unless it is none, or a key that was not there.
func failed(c prometheus.Counter, err error) {
	if err != nil && !errors.Is(err, redis.Nil) {
		c.Inc()
	}
}

// watch registers the counts of the gateway's wake-ups and webhook deliveries, read
// from the waker and the dispatcher when scraped.
func (m *metrics) watch(w *delivery.Waker, d *webhook.Dispatcher) {
	count := func(subsystem, name, help string, labels prometheus.Labels, f func() int64) {
		m.registry.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: namespace, Subsystem: subsystem,
			Name: name, Help: help, ConstLabels: labels}, func() float64 { return float64(f()) }))
	}
	wakeHelp := "Wake-ups of devices through their push services, by result: sent, failed (each try), gone (the " +
		"service no longer knows the endpoint, which is forgotten) or dropped (a queue was full)."
	count("push", "wakeups_total", wakeHelp, prometheus.Labels{"result": "sent"}, func() int64 { return w.Stats().Sent })
	count("push", "wakeups_total", wakeHelp, prometheus.Labels{"result": "failed"}, func() int64 { return w.Stats().Failed })
	count("push", "wakeups_total", wakeHelp, prometheus.Labels{"result": "gone"}, func() int64 { return w.Stats().Gone })
	count("push", "wakeups_total", wakeHelp, prometheus.Labels{"result": "dropped"}, func() int64 { return w.Stats().Dropped })
	hookHelp := "Webhook deliveries by this gateway, by result: delivered (an event answered 2xx), failed (an " +
		"attempt that was not), gave_up (a webhook failing for the whole retry window)."
	count("webhook", "deliveries_total", hookHelp, prometheus.Labels{"result": "delivered"}, func() int64 { return d.Stats().Delivered })
	count("webhook", "deliveries_total", hookHelp, prometheus.Labels{"result": "failed"}, func() int64 { return d.Stats().Failed })
	count("webhook", "deliveries_total", hookHelp, prometheus.Labels{"result": "gave_up"}, func() int64 { return d.Stats().GaveUp })
}
