package client_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/heraldhq/herald/client"
	"github.com/heraldhq/herald/e2e"
	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
)

// BenchmarkBroadcast measures what a broadcast costs the sender, gateway aside: one
// 4 KiB body sealed for 1000 devices (one per recipient), the batch built and
// encoded as gRPC would. The gateway is a stub that answers at once, and the lookups
// come from the cache, so what is left is the SDK's own work, which is mostly one
// HPKE wrap and one Ed25519 signature per device.
func BenchmarkBroadcast(b *testing.B) {
	for _, alg := range []e2e.Algorithm{e2e.MLKEM768X25519, e2e.X25519} {
		b.Run(alg.String(), func(b *testing.B) {
			const recipients = 1000
			gw := newStubGateway(b, alg, recipients)
			signer, _ := e2e.GenerateSigningKey()
			biz := client.NewBusiness(gw, "biz_bench", "hk_bench", signer, client.WithLookupTTL(time.Hour))
			body := bytes.Repeat([]byte("x"), 4<<10)
			broadcast := func() {
				rs, err := biz.Broadcast(context.Background(), gw.phones, e2e.Transactional, e2e.AccountUpdate, body)
				if err != nil || rs[recipients-1].Sent == nil {
					b.Fatal(err)
				}
			}
			broadcast() // fills the lookup cache
			gw.sentBytes = 0
			b.ResetTimer()
			for b.Loop() {
				broadcast()
			}
			b.ReportMetric(float64(recipients*b.N)/b.Elapsed().Seconds(), "devices/s")
			b.ReportMetric(float64(gw.sentBytes)/float64(b.N)/recipients, "wire-B/device")
		})
	}
}

// stubGateway answers LookupRecipient and SendBatch from memory, encoding each
// request as the wire would.
type stubGateway struct {
	phones    []string
	devices   map[string]*heraldv1.Device
	sentBytes int
}

func newStubGateway(b *testing.B, alg e2e.Algorithm, n int) *stubGateway {
	g := &stubGateway{devices: map[string]*heraldv1.Device{}}
	for i := range n {
		k, err := e2e.GenerateDeviceKey(alg)
		if err != nil {
			b.Fatal(err)
		}
		phone := fmt.Sprintf("+1415555%04d", i)
		g.phones = append(g.phones, phone)
		g.devices[phone] = &heraldv1.Device{DeviceId: fmt.Sprintf("dev_%d", i), PublicKey: k.PublicKey(),
			KeyAlgorithm: heraldv1.KeyAlgorithm(alg), KeyId: k.KeyID()}
	}
	return g
}

func (g *stubGateway) Invoke(_ context.Context, method string, args, reply any, _ ...grpc.CallOption) error {
	var resp proto.Message
	switch method {
	case heraldv1.MessagingService_LookupRecipient_FullMethodName:
		d := g.devices[args.(*heraldv1.LookupRecipientRequest).GetRecipient()]
		resp = &heraldv1.LookupRecipientResponse{Outcome: heraldv1.Outcome_OUTCOME_ACCEPTED, Devices: []*heraldv1.Device{d}}
	case heraldv1.MessagingService_SendBatch_FullMethodName:
		req := args.(*heraldv1.SendBatchRequest)
		wire, err := proto.Marshal(req)
		if err != nil {
			return err
		}
		g.sentBytes += len(wire)
		r := &heraldv1.SendBatchResponse{}
		for i := range req.GetMessages() {
			r.Results = append(r.Results, &heraldv1.Result{Outcome: heraldv1.Outcome_OUTCOME_ACCEPTED, MessageId: fmt.Sprint("m", i)})
		}
		resp = r
	default:
		return errors.New("stub: " + method)
	}
	proto.Merge(reply.(proto.Message), resp)
	return nil
}

func (g *stubGateway) NewStream(context.Context, *grpc.StreamDesc, string, ...grpc.CallOption) (grpc.ClientStream, error) {
	return nil, errors.New("stub: no streams")
}
