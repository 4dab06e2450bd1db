package server

import (
	"context"
	"strings"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/stats"
)

// tracing makes spans of a gateway's RPCs and of the Redis round trips they make, for
// Config.TracerProvider.
//
// A span holds the method, the status code and the server's address; a Redis span the
// command's name and, for a pipeline, how many commands it held. Nothing a caller
// sent is recorded: no metadata (tokens), no message events (the default of otelgrpc,
// which would record sizes only), no command arguments (recipient ids, ciphertext).
// A span's error description is its status message, which never holds them either.
type tracing struct {
	provider trace.TracerProvider
	tracer   trace.Tracer // Redis spans'
}

// newTracing returns nil, and so no tracing at no cost, without a provider.
func newTracing(tp trace.TracerProvider) *tracing {
	if tp == nil {
		return nil
	}
	return &tracing{provider: tp, tracer: tp.Tracer("github.com/heraldhq/herald/server")}
}

// serverOptions trace every RPC but health checks, which load balancers make every
// few seconds. Herald's port is public: a caller's trace context is linked, not
// continued, so that nobody outside can put spans into the operator's traces or make
// them sampled.
func (t *tracing) serverOptions() []grpc.ServerOption {
	if t == nil {
		return nil
	}
	return []grpc.ServerOption{grpc.StatsHandler(otelgrpc.NewServerHandler(
		otelgrpc.WithTracerProvider(t.provider),
		otelgrpc.WithMeterProvider(noop.NewMeterProvider()), // metrics are Prometheus's
		otelgrpc.WithPropagators(propagation.TraceContext{}),
		otelgrpc.WithPublicEndpoint(),
		otelgrpc.WithFilter(func(info *stats.RPCTagInfo) bool {
			return !strings.HasPrefix(info.FullMethodName, "/grpc.health.v1.Health/")
		}),
	))}
}

// noSpan ends no span.
func noSpan(error) {}

// redisSpan starts a span for a Redis round trip of op (a command's name, or
// "pipeline" of n commands) when ctx is in a recorded span, as a call made while
// serving a traced RPC is; background work (forwarding, sweeps) makes none. end ends it.
func (t *tracing) redisSpan(ctx context.Context, op string, n int) (_ context.Context, end func(error)) {
	if !trace.SpanFromContext(ctx).IsRecording() {
		return ctx, noSpan
	}
	attrs := []attribute.KeyValue{attribute.String("db.system.name", "redis"), attribute.String("db.operation.name", op)}
	if op == "pipeline" {
		attrs = append(attrs, attribute.Int("db.operation.batch.size", n))
	}
	ctx, span := t.tracer.Start(ctx, "redis "+op, trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(attrs...))
	return ctx, func(err error) {
		if err != nil {
			span.SetStatus(otelcodes.Error, "") // the error's text may quote what was sent
		}
		span.End()
	}
}
