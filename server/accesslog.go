package server

import (
	"context"
	"log/slog"
	"strings"
	"time"

	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// callRecord is what the access log learns about an RPC while it runs: whom authentication
// found it acts for.
type callRecord struct {
	business string
	device   string
	// messages is how many messages a Send or SendBatch that was read carries, for
	// the metrics of a call then refused whole.
	messages int
}

// noteMessages tells the access log of ctx's call how many messages it carries.
func noteMessages(ctx context.Context, n int) {
	if c, ok := ctx.Value(recordKey{}).(*callRecord); ok {
		c.messages = n
	}
}

type recordKey struct{}

// identify tells the access log of ctx's call whom it acts for, once authenticated.
func identify(ctx context.Context) {
	if c, ok := ctx.Value(recordKey{}).(*callRecord); ok {
		c.business, c.device = businessFrom(ctx), deviceFrom(ctx).DeviceID
	}
}

// unaryObserve counts, times and logs every unary call: one access line each. It is
// the outermost interceptor, so that calls refused by authentication, and panics
// (which unaryRecover turns into INTERNAL), are seen too.
func (s *Server) unaryObserve(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	start := time.Now()
	c := &callRecord{}
	resp, err := h(context.WithValue(ctx, recordKey{}, c), req)
	took := time.Since(start)
	s.metrics.call(info.FullMethod, err, took)
	if info.FullMethod == sendMethod || info.FullMethod == sendBatchMethod {
		s.metrics.sent(info.FullMethod, c.messages, resp, err)
	}
	s.logCall(ctx, info.FullMethod, c, err, took)
	return resp, err
}

// streamObserve is unaryObserve for streams, which it also counts while they are open.
func (s *Server) streamObserve(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	start := time.Now()
	c := &callRecord{}
	open := s.metrics.streams.WithLabelValues(methodName(info.FullMethod))
	open.Inc()
	err := h(srv, &ctxStream{ServerStream: ss, ctx: context.WithValue(ss.Context(), recordKey{}, c)})
	took := time.Since(start)
	s.metrics.call(info.FullMethod, err, took)
	// Counted before it stops counting as open, so that a scrape begun after one that
	// saw it closed sees it counted. (Not the same scrape: a registry gathers its
	// collectors concurrently.)
	open.Dec()
	s.logCall(ss.Context(), info.FullMethod, c, err, took)
	return err
}

// logCall writes a call's access line: at info, at warn for a failed login or an
// unavailable store, at error for a failure of the gateway's own. It names the method,
// the code, the duration and whom the call acted for (a business or device id), and
// for a failed login the kind of credential, why it failed and the peer's address
// (at most a line a second of each kind, with how many were not logged since the
// last); never a token, a phone number or anything a message holds. With tracing, the trace
// id ties the line to the call's spans.
func (s *Server) logCall(ctx context.Context, method string, c *callRecord, err error, took time.Duration) {
	code := status.Code(err)
	level, msg := slog.LevelInfo, "rpc"
	login := code == codes.Unauthenticated && c.business == "" && c.device == ""
	switch {
	case code == codes.Internal, code == codes.Unknown, code == codes.DataLoss:
		level = slog.LevelError
	case code == codes.Unavailable:
		level = slog.LevelWarn
	case login:
		level, msg = slog.LevelWarn, "login failed"
	}
	if !s.log.Enabled(ctx, level) {
		return
	}
	unseen := 0
	if login {
		// At most a line a second of each kind of credential, whether the tap or
		// authentication refused it: failed logins are an attacker's to make.
		var due bool
		if unseen, due = s.refusals.due("login failed: " + credentialName(method)); !due {
			return
		}
	}
	attrs := make([]slog.Attr, 0, 9)
	attrs = append(attrs, slog.String("method", method), slog.String("code", code.String()), slog.Duration("duration", took))
	switch {
	case c.business != "":
		attrs = append(attrs, slog.String("business", c.business))
	case c.device != "":
		attrs = append(attrs, slog.String("device", c.device))
	}
	if login {
		// The messages of authentication's refusals are fixed texts ("invalid device
		// token"), which say what was wrong without the token.
		attrs = append(attrs, slog.String("credential", credentialName(method)), slog.String("reason", status.Convert(err).Message()))
		if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
			attrs = append(attrs, slog.String("peer", p.Addr.String()))
		}
		if unseen > 0 {
			attrs = append(attrs, slog.Int("not_logged_since_last", unseen))
		}
	}
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		attrs = append(attrs, slog.String("trace_id", sc.TraceID().String()))
	}
	s.log.LogAttrs(ctx, level, msg, attrs...)
}

// credential is the kind of token method takes.
func credentialName(method string) string {
	switch {
	case strings.HasPrefix(method, messagingPrefix):
		return "api_key"
	case strings.HasPrefix(method, recipientPrefix):
		return "device_token"
	case strings.HasPrefix(method, adminPrefix):
		return "admin_token"
	}
	return "none"
}
