package server

import (
	"context"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
)

// How a request is read. gRPC-Go decodes a unary request before it runs the unary
// interceptors, answers a request its codec cannot decode with INTERNAL, and has one
// receive limit for every method. So the gateway registers its services through
// registrar, which changes three things:
//
//   - Unary interceptors run before the request is read: they receive a nil request,
//     and the handler decodes it when they let the call through. Authentication is an
//     interceptor, so no request of a caller without valid credentials is decoded, or
//     read beyond one stream window.
//   - Each method has its own limit (requestLimit), checked on the request's length
//     before it is decoded: RESOURCE_EXHAUSTED, reason REQUEST_TOO_LARGE. (A request
//     over gRPC's own limit, MaxBatchBytes, gRPC refuses RESOURCE_EXHAUSTED itself on
//     its length prefix, before reading it.)
//   - A request that is not valid protobuf is INVALID_ARGUMENT, not INTERNAL. (One
//     whose compression does not undo is still gRPC's INTERNAL.)

// registrar registers services on the gateway's gRPC server with its decoding rules.
// It serves reflection's GetServiceInfo too, so that reflection lists them.
type registrar struct {
	s *Server
	g *grpc.Server // the public or the admin server
}

func (r registrar) RegisterService(desc *grpc.ServiceDesc, impl any) {
	d := *desc
	d.Methods = make([]grpc.MethodDesc, len(desc.Methods))
	for i, md := range desc.Methods {
		d.Methods[i] = r.s.unaryMethod("/"+desc.ServiceName+"/"+md.MethodName, md)
	}
	d.Streams = make([]grpc.StreamDesc, len(desc.Streams))
	for i, sd := range desc.Streams {
		d.Streams[i] = r.s.streamMethod("/"+desc.ServiceName+"/"+sd.StreamName, sd)
	}
	r.g.RegisterService(&d, impl)
}

func (r registrar) GetServiceInfo() map[string]grpc.ServiceInfo { return r.g.GetServiceInfo() }

// unaryMethod runs md's interceptors before its request is read, and reads it with
// the method's limit.
func (s *Server) unaryMethod(method string, md grpc.MethodDesc) grpc.MethodDesc {
	handle, limit := md.Handler, s.requestLimit(method)
	md.Handler = func(srv any, ctx context.Context, dec func(any) error, icpt grpc.UnaryServerInterceptor) (any, error) {
		run := func(ctx context.Context, _ any) (any, error) {
			// With no interceptor, the generated handler decodes and calls the method.
			return handle(srv, ctx, func(v any) error { return s.decode(ctx, limit, dec, v) }, nil)
		}
		if icpt == nil {
			return run(ctx, nil)
		}
		return icpt(ctx, nil, &grpc.UnaryServerInfo{Server: srv, FullMethod: method}, run)
	}
	return md
}

// streamMethod reads sd's requests with the method's limit. Stream interceptors run
// before the handler reads anything already.
func (s *Server) streamMethod(method string, sd grpc.StreamDesc) grpc.StreamDesc {
	handle, limit := sd.Handler, s.requestLimit(method)
	sd.Handler = func(srv any, ss grpc.ServerStream) error {
		return handle(srv, &decodingStream{ServerStream: ss, s: s, limit: limit})
	}
	return sd
}

// decodingStream reads a stream's requests with its method's limit.
type decodingStream struct {
	grpc.ServerStream
	s     *Server
	limit int
}

func (d *decodingStream) RecvMsg(m any) error {
	return d.s.decode(d.Context(), d.limit, d.ServerStream.RecvMsg, m)
}

// decode reads one request into v with recv (gRPC's), at most limit bytes of it, and
// tells the call's open slot, if it holds one, that its request is in.
func (s *Server) decode(ctx context.Context, limit int, recv func(any) error, v any) error {
	r := &request{msg: v, limit: limit}
	err := recv(r)
	callFrom(ctx).requestRead()
	if r.err != nil {
		return r.err
	}
	return err
}

// request is what decode hands gRPC to decode into: the message, and the method's
// limit for the codec to check. The codec reports a request it refuses in err and
// not to gRPC, which would answer the client INTERNAL at once: the handler returns
// err, and the client gets that status.
type request struct {
	msg   any
	limit int
	err   error // the codec's refusal, as the status the client gets
}

// codec is gRPC's protobuf codec with the gateway's rules for requests.
type codec struct{}

var protoCodec = encoding.GetCodecV2(proto.Name)

func (codec) Name() string { return proto.Name }

func (codec) Marshal(v any) (mem.BufferSlice, error) { return protoCodec.Marshal(v) }

func (codec) Unmarshal(data mem.BufferSlice, v any) error {
	r, ok := v.(*request)
	if !ok {
		return protoCodec.Unmarshal(data, v)
	}
	switch n := data.Len(); {
	case r.err != nil:
		// A second message of a unary call, which gRPC refuses after this.
	case n > r.limit:
		r.err = withInfo(codes.ResourceExhausted, fmt.Sprintf("request of %d bytes, over this method's limit of %d",
			n, r.limit), "REQUEST_TOO_LARGE")
	default:
		if err := protoCodec.Unmarshal(data, r.msg); err != nil {
			r.err = status.Error(codes.InvalidArgument, "malformed request: not a valid protobuf message of this "+
				"method's request type: "+err.Error())
		}
	}
	return nil
}
