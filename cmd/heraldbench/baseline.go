package main

import (
	"context"
	_ "embed"
	"errors"
	"flag"
	"fmt"
	"net"
	"os/signal"
	"syscall"

	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// The baseline server is the floor Herald's Send is held against: the same gRPC stack
// (grpc-go, the version Herald builds with) in a process of its own, so that its CPU
// is measured apart from heraldbench's. Its two unary methods are registered by hand
// and carry heraldv1's SendRequest and SendResponse, so a call is the size of a Send
// and no proto of its own is needed: Empty answers at once, Script runs the small
// script once.

//go:embed baseline.lua
var smallScriptSource string

// smallScript is baseline.lua: what the Script method runs per call, and what the
// pipelined baseline runs sixteen to a round trip.
var smallScript = redis.NewScript(smallScriptSource)

const (
	baselineService = "heraldbench.Baseline"
	emptyMethod     = "/" + baselineService + "/Empty"
	scriptMethod    = "/" + baselineService + "/Script"
	// scriptBusiness is the business whose block and consent the small script reads.
	scriptBusiness = "bench"
)

// baseliner is the baseline service, as grpc checks a server against it.
type baseliner interface {
	Empty(context.Context, *heraldv1.SendRequest) (*heraldv1.SendResponse, error)
	Script(context.Context, *heraldv1.SendRequest) (*heraldv1.SendResponse, error)
}

var baselineDesc = grpc.ServiceDesc{
	ServiceName: baselineService,
	HandlerType: (*baseliner)(nil),
	Methods: []grpc.MethodDesc{
		{MethodName: "Empty", Handler: unaryHandler(emptyMethod, baseliner.Empty)},
		{MethodName: "Script", Handler: unaryHandler(scriptMethod, baseliner.Script)},
	},
	Metadata: "heraldbench",
}

// unaryHandler is what protoc-gen-go-grpc would generate for one method.
func unaryHandler(method string, call func(baseliner, context.Context, *heraldv1.SendRequest) (*heraldv1.SendResponse, error)) grpc.MethodHandler {
	return func(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
		req := new(heraldv1.SendRequest)
		if err := dec(req); err != nil {
			return nil, err
		}
		if interceptor == nil {
			return call(srv.(baseliner), ctx, req)
		}
		info := &grpc.UnaryServerInfo{Server: srv, FullMethod: method}
		return interceptor(ctx, req, info, func(ctx context.Context, req any) (any, error) {
			return call(srv.(baseliner), ctx, req.(*heraldv1.SendRequest))
		})
	}
}

// baseline serves the baseline service on a Redis client of go-redis's defaults, as
// heraldd's is.
type baseline struct {
	rdb *redis.Client
}

func (baseline) Empty(context.Context, *heraldv1.SendRequest) (*heraldv1.SendResponse, error) {
	return &heraldv1.SendResponse{Result: &heraldv1.Result{Outcome: heraldv1.Outcome_OUTCOME_ACCEPTED}}, nil
}

func (b baseline) Script(ctx context.Context, req *heraldv1.SendRequest) (*heraldv1.SendResponse, error) {
	m := req.GetMessage()
	if len(m.GetEnvelopes()) == 0 {
		return nil, status.Error(codes.InvalidArgument, "an envelope is required")
	}
	e := m.GetEnvelopes()[0]
	id, err := smallScript.EvalSha(ctx, b.rdb, scriptKeys(m.GetRecipient()), scriptArgs(e.GetDeviceId(), e.GetCiphertext())...).Result()
	if err != nil {
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	res := &heraldv1.Result{Outcome: heraldv1.Outcome_OUTCOME_BLOCKED}
	if s, ok := id.(string); ok {
		res = &heraldv1.Result{Outcome: heraldv1.Outcome_OUTCOME_ACCEPTED, MessageId: s}
	}
	return &heraldv1.SendResponse{Result: res}, nil
}

// scriptKeys are the keys the small script touches for one recipient, all on one slot.
func scriptKeys(recipient string) []string {
	p := "hb:{" + recipient + "}:"
	return []string{p + "blk", p + "con", p + "mb"}
}

// scriptArgs are the small script's arguments for one envelope.
func scriptArgs(device string, ciphertext []byte) []any {
	return []any{scriptBusiness, scriptBusiness + ":t", device, ciphertext}
}

// serveBaseline is `heraldbench baseline`: it serves the baseline service until
// SIGTERM or SIGINT.
func serveBaseline(args []string) error {
	fs := flag.NewFlagSet("heraldbench baseline", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:0", "address to serve on")
	redisAddr := fs.String("redis", "", "Redis host:port the Script method runs on")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *redisAddr == "" {
		return errors.New("-redis is required")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	rdb := redis.NewClient(&redis.Options{Addr: *redisAddr})
	defer rdb.Close()
	if err := smallScript.Load(ctx, rdb).Err(); err != nil {
		return fmt.Errorf("load the small script: %w", err)
	}
	lis, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	srv := grpc.NewServer()
	srv.RegisterService(&baselineDesc, baseline{rdb: rdb})
	go func() {
		<-ctx.Done()
		srv.Stop()
	}()
	return srv.Serve(lis)
}
