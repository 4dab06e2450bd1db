package server

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldhq/herald/e2e"
	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	"github.com/heraldhq/herald/keylog"
	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
)

// roundTrips counts Redis round trips (a pipeline is one), split by whether they
// were made while serving an RPC or by background work (status forwarding, health).
type roundTrips struct {
	rpc, background atomic.Int64
}

func (r *roundTrips) count(ctx context.Context) {
	if _, ok := grpc.Method(ctx); ok {
		r.rpc.Add(1)
	} else {
		r.background.Add(1)
	}
}

func (r *roundTrips) DialHook(next redis.DialHook) redis.DialHook { return next }

func (r *roundTrips) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		r.count(ctx)
		return next(ctx, cmd)
	}
}

func (r *roundTrips) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		r.count(ctx)
		return next(ctx, cmds)
	}
}

// benchGateway is a gateway with n registered recipients of one device each, and a
// business with the daily new-recipient allowance daily (0: none).
func benchGateway(b *testing.B, n int, daily uint32) (*gateway, string, []string, []device, *roundTrips) {
	b.Helper()
	// Every call's access line is written at info, as in production, and discarded:
	// the benchmark measures the gateway, not a terminal.
	g := startGateway(b, func(c *Config) {
		c.Logger = slog.New(slog.NewJSONHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo}))
	})
	biz, key := g.newBusiness("Bench")
	// Limits raised so high they never bind, so the whole limit path runs.
	g.setLimits(biz, 1e6, 1e6, daily)
	numbers := make([]string, n)
	devs := make([]device, n)
	for i := range n {
		numbers[i] = fmt.Sprintf("+1415555%04d", i)
		devs[i] = g.register(numbers[i])
	}
	rt := &roundTrips{}
	g.srv.cfg.Redis.AddHook(rt)
	return g, key, numbers, devs, rt
}

// allowanceModes runs a benchmark for a business without a new-recipient allowance
// and for one with an allowance that never binds, so that the cost of first contacts
// (a lease and a second admission each, once per person per window) shows beside the
// plain path in one run.
var allowanceModes = []struct {
	name  string
	daily uint32
}{
	{"allowance=none", 0},
	{"allowance=on", 100_000_000},
}

// BenchmarkSend sends single messages from 32 concurrent callers through a real gRPC
// server on real Redis.
func BenchmarkSend(b *testing.B) {
	for _, m := range allowanceModes {
		b.Run(m.name, func(b *testing.B) { benchSend(b, m.daily) })
	}
}

func benchSend(b *testing.B, daily uint32) {
	g, key, numbers, devs, rt := benchGateway(b, 64, daily)
	var seq atomic.Int64
	ctx := as(key)
	b.SetParallelism(16)
	b.ResetTimer()
	cpu := redisCPU(g)
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := seq.Add(1)
			r := int(i) % len(numbers)
			res, err := g.messaging.Send(ctx, &heraldv1.SendRequest{Message: msg(numbers[r], tx, rcpt,
				fmt.Sprint("s", i), "benchmark body", devs[r])})
			if err != nil || res.Result.Outcome != heraldv1.Outcome_OUTCOME_ACCEPTED {
				b.Fatalf("send: %v %v", res, err)
			}
		}
	})
	elapsed := time.Since(start)
	b.StopTimer()
	report(b, float64(b.N), elapsed, rt, redisCPU(g)-cpu)
}

// BenchmarkSendBatch sends batches of 100 messages to 100 people.
func BenchmarkSendBatch(b *testing.B) {
	for _, m := range allowanceModes {
		b.Run(m.name, func(b *testing.B) { benchSendBatch(b, m.daily) })
	}
}

func benchSendBatch(b *testing.B, daily uint32) {
	const size = 100
	g, key, numbers, devs, rt := benchGateway(b, size, daily)
	ctx := as(key)
	var seq atomic.Int64
	b.SetParallelism(2)
	b.ResetTimer()
	cpu := redisCPU(g)
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := seq.Add(1)
			req := &heraldv1.SendBatchRequest{Messages: make([]*heraldv1.Message, size)}
			for j := range size {
				req.Messages[j] = msg(numbers[j], tx, rcpt, fmt.Sprintf("b%d-%d", i, j), "benchmark body", devs[j])
			}
			res, err := g.messaging.SendBatch(ctx, req)
			if err != nil || res.Results[size-1].Outcome != heraldv1.Outcome_OUTCOME_ACCEPTED {
				b.Fatalf("send batch: %v", err)
			}
		}
	})
	elapsed := time.Since(start)
	b.StopTimer()
	report(b, float64(b.N*size), elapsed, rt, redisCPU(g)-cpu)
}

func report(b *testing.B, msgs float64, elapsed time.Duration, rt *roundTrips, redisCPU time.Duration) {
	b.ReportMetric(msgs/elapsed.Seconds(), "msgs/s")
	if redisCPU > 0 {
		b.ReportMetric(float64(redisCPU.Microseconds())/msgs, "redis_µs/msg")
	}
	b.ReportMetric(float64(rt.rpc.Load())/msgs, "rpc_rt/msg")
	b.ReportMetric(float64(rt.rpc.Load()+rt.background.Load())/msgs, "all_rt/msg")
}

// redisCPU is the CPU time the gateway's redis-server has used (user and system, all
// its threads), from INFO; 0 on the in-process store, which has none of its own.
func redisCPU(g *gateway) time.Duration {
	info, err := g.rdb.Info(context.Background(), "cpu").Result()
	if err != nil {
		return 0
	}
	var total float64
	for line := range strings.SplitSeq(info, "\r\n") {
		k, v, _ := strings.Cut(line, ":")
		if k == "used_cpu_sys" || k == "used_cpu_user" {
			f, _ := strconv.ParseFloat(v, 64)
			total += f
		}
	}
	return time.Duration(total * float64(time.Second))
}

// BenchmarkLookupRecipient looks up people of two devices each, on a gateway without a
// key log and on one with it (each key with its inclusion proof, and the checkpoint),
// in one run: the cost of the proofs shows as the difference. resp_B/device is the
// response's wire size per device.
func BenchmarkLookupRecipient(b *testing.B) {
	skey, _, err := keylog.GenerateKey("herald-bench-log")
	if err != nil {
		b.Fatal(err)
	}
	for _, m := range []struct {
		name, key string
	}{{"keylog=off", ""}, {"keylog=on", skey}} {
		b.Run(m.name, func(b *testing.B) {
			g := startGateway(b, func(c *Config) { c.LogKey = m.key })
			biz, key := g.newBusiness("Bench")
			g.setLimits(biz, 1e6, 1e6, 0)
			const people = 64
			numbers := make([]string, people)
			for i := range people {
				numbers[i] = fmt.Sprintf("+1415556%04d", i)
				g.register(numbers[i])
				g.register(numbers[i])
			}
			ctx := as(key)
			for _, n := range numbers { // the first lookup logs nothing new, but warms caches
				if _, err := g.messaging.LookupRecipient(ctx, &heraldv1.LookupRecipientRequest{Recipient: n, Category: tx}); err != nil {
					b.Fatal(err)
				}
			}
			rt := &roundTrips{}
			g.srv.cfg.Redis.AddHook(rt)
			var size int64
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				resp, err := g.messaging.LookupRecipient(ctx, &heraldv1.LookupRecipientRequest{Recipient: numbers[i%people], Category: tx})
				if err != nil || len(resp.Devices) != 2 || (m.key != "") != (resp.Devices[0].KeyProof != nil) {
					b.Fatalf("lookup: %v, %v", resp, err)
				}
				size += int64(proto.Size(resp))
			}
			b.StopTimer()
			b.ReportMetric(float64(size)/float64(2*b.N), "resp_B/device")
			b.ReportMetric(float64(rt.rpc.Load())/float64(b.N), "rpc_rt/op")
		})
	}
}

// BenchmarkReceive streams b.N queued deliveries, signed under a registered business
// key, to one device, on a gateway without a key log and on one with it (each delivery
// with the business key's inclusion proof and the checkpoint), in one run. Sending
// them is not timed. item_B is a stream item's wire size.
func BenchmarkReceive(b *testing.B) {
	skey, _, err := keylog.GenerateKey("herald-bench-log")
	if err != nil {
		b.Fatal(err)
	}
	signer, err := e2e.GenerateSigningKey()
	if err != nil {
		b.Fatal(err)
	}
	for _, m := range []struct {
		name, key string
	}{{"keylog=off", ""}, {"keylog=on", skey}} {
		b.Run(m.name, func(b *testing.B) {
			g := startGateway(b, func(c *Config) { c.LogKey = m.key })
			biz, key := g.newBusiness("Bench")
			g.setLimits(biz, 1e6, 1e6, 0)
			if _, err := g.messaging.SetSigningKey(as(key), &heraldv1.SetSigningKeyRequest{PublicKey: signer.PublicKey()}); err != nil {
				b.Fatal(err)
			}
			phone := g.register(alice)
			for i := range b.N {
				m := msg(alice, tx, rcpt, fmt.Sprint("r", i), "benchmark body", phone)
				m.SigningKeyId = e2e.KeyID(signer.PublicKey())
				if r, err := g.messaging.Send(as(key), &heraldv1.SendRequest{Message: m}); err != nil ||
					r.Result.Outcome != heraldv1.Outcome_OUTCOME_ACCEPTED {
					b.Fatalf("send: %v, %v", r, err)
				}
			}
			ctx, cancel := context.WithCancel(as(phone.token))
			defer cancel()
			var size int64
			b.ReportAllocs()
			b.ResetTimer()
			st, err := g.recipient.Receive(ctx, &heraldv1.ReceiveRequest{})
			if err != nil {
				b.Fatal(err)
			}
			for n := 0; n < b.N; {
				item, err := st.Recv()
				if err != nil {
					b.Fatal(err)
				}
				d := item.GetDelivery()
				if d == nil {
					continue
				}
				if (m.key != "") != (d.BusinessKeyProof != nil) {
					b.Fatalf("delivery with proof %v", d.BusinessKeyProof)
				}
				size += int64(proto.Size(item))
				n++
			}
			b.StopTimer()
			b.ReportMetric(float64(size)/float64(b.N), "item_B")
		})
	}
}

// BenchmarkObserve is what the observe interceptor adds to each Send: metrics, and the
// access line written at info (JSON, discarded), around a handler that does nothing,
// with authentication's identify. Compare it with BenchmarkSend's ns/op.
func BenchmarkObserve(b *testing.B) {
	g := startGateway(b, func(c *Config) {
		c.Logger = slog.New(slog.NewJSONHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo}))
	})
	info := &grpc.UnaryServerInfo{FullMethod: sendMethod}
	resp := &heraldv1.SendResponse{Result: &heraldv1.Result{Outcome: heraldv1.Outcome_OUTCOME_ACCEPTED, MessageId: "m"}}
	handler := func(ctx context.Context, _ any) (any, error) {
		identify(context.WithValue(ctx, businessKey, "biz_bench"))
		return resp, nil
	}
	req := &heraldv1.SendRequest{}
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := g.srv.unaryObserve(ctx, req, info, handler); err != nil {
				b.Fatal(err)
			}
		}
	})
}
