package main

import (
	"bufio"
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	"github.com/heraldhq/herald/internal/redistest"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

const replicaAdmin = "replica-admin-token-0123456789"

// startReplicas builds heraldd and starts n processes on one Redis.
func startReplicas(t *testing.T, redisURL string, n int) []*grpc.ClientConn {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "heraldd")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build heraldd: %v\n%s", err, out)
	}
	var conns []*grpc.ClientConn
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close()
		cmd := exec.Command(bin, "--listen", addr, "--redis", redisURL, "--log-level", "warn", "--replicas", fmt.Sprint(n))
		cmd.Env = append(os.Environ(), "HERALD_SECRET=replica-secret-0123456789", "HERALD_ADMIN_TOKEN="+replicaAdmin,
			"HERALD_PAIR_INTERVAL=0", "HERALD_RECIPIENT_MARKETING_CAP=0")
		stderr, _ := cmd.StderrPipe()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() {
			s := bufio.NewScanner(stderr)
			for s.Scan() {
				t.Logf("heraldd %s: %s", addr, s.Text())
			}
		}()
		t.Cleanup(func() {
			cmd.Process.Signal(os.Interrupt)
			done := make(chan struct{})
			go func() { cmd.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				cmd.Process.Kill()
			}
		})
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		// Wait until it answers.
		deadline := time.Now().Add(20 * time.Second)
		for {
			ctx, cancel := context.WithTimeout(bearer(replicaAdmin), time.Second)
			_, err := heraldv1.NewAdminServiceClient(conn).GetBusiness(ctx, &heraldv1.GetBusinessRequest{BusinessId: "biz_none"})
			cancel()
			if status.Code(err) == codes.NotFound {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("heraldd on %s did not come up: %v", addr, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
		conns = append(conns, conn)
	}
	return conns
}

func bearer(tok string) context.Context {
	return metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+tok)
}

// TestThreeReplicasShareTheLimit runs three heraldd processes on one Redis and
// hammers one business through all three for 10 s: admissions stay within
// R·T + B + N·L (package ratelimit), while a second business on the same gateways is
// unaffected.
func TestThreeReplicasShareTheLimit(t *testing.T) {
	if testing.Short() {
		t.Skip("runs for 10 s")
	}
	rs := redistest.Start(t)
	conns := startReplicas(t, rs.URL, 3)
	admin := heraldv1.NewAdminServiceClient(conns[0])
	ctx := bearer(replicaAdmin)
	newBiz := func(name string, r float64, b uint32) (string, string) {
		cb, err := admin.CreateBusiness(ctx, &heraldv1.CreateBusinessRequest{DisplayName: name})
		if err != nil {
			t.Fatal(err)
		}
		k, err := admin.IssueApiKey(ctx, &heraldv1.IssueApiKeyRequest{BusinessId: cb.BusinessId})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := admin.SetBusinessLimits(ctx, &heraldv1.SetBusinessLimitsRequest{BusinessId: cb.BusinessId,
			MessagesPerSecond: r, Burst: b, UnlimitedUniqueRecipients: true}); err != nil {
			t.Fatal(err)
		}
		return cb.BusinessId, k.ApiKey
	}
	const (
		rate  = 100.0
		burst = 50
		span  = 10 * time.Second
	)
	_, hot := newBiz("Hammered", rate, burst)
	_, calm := newBiz("Calm", 5, 5)

	// Ten people with one device each.
	type person struct{ number, device string }
	var people []person
	for i := range 10 {
		number := fmt.Sprintf("+1415555%04d", 200+i)
		code, err := admin.IssueVerificationCode(ctx, &heraldv1.IssueVerificationCodeRequest{PhoneNumber: number})
		if err != nil {
			t.Fatal(err)
		}
		r, err := heraldv1.NewRecipientServiceClient(conns[i%3]).RegisterDevice(context.Background(), &heraldv1.RegisterDeviceRequest{
			PhoneNumber: number, Code: code.Code, PublicKey: x25519Key(t), KeyAlgorithm: heraldv1.KeyAlgorithm_KEY_ALGORITHM_HPKE_X25519})
		if err != nil {
			t.Fatal(err)
		}
		people = append(people, person{number, r.DeviceId})
	}
	message := func(id string, p person) *heraldv1.SendRequest {
		return &heraldv1.SendRequest{Message: &heraldv1.Message{Recipient: p.number, Category: heraldv1.Category_CATEGORY_TRANSACTIONAL,
			Kind: heraldv1.Kind_KIND_RECEIPT, ClientMessageId: id,
			Envelopes: []*heraldv1.Envelope{{DeviceId: p.device, Ciphertext: []byte("sealed")}}}}
	}

	var admitted, refused atomic.Int64
	var seq atomic.Int64
	var wg sync.WaitGroup
	hctx, stop := context.WithTimeout(bearer(hot), span)
	defer stop()
	start := time.Now()
	for _, conn := range conns {
		mc := heraldv1.NewMessagingServiceClient(conn)
		for range 6 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for hctx.Err() == nil {
					i := seq.Add(1)
					_, err := mc.Send(hctx, message(fmt.Sprint("h", i), people[i%int64(len(people))]))
					switch {
					case err == nil:
						admitted.Add(1)
					case status.Code(err) == codes.ResourceExhausted:
						refused.Add(1)
						time.Sleep(min(retryDelay(err), 20*time.Millisecond))
					case hctx.Err() != nil, status.Code(err) == codes.DeadlineExceeded:
					default:
						t.Error(err)
						return
					}
				}
			}()
		}
	}
	// Meanwhile the calm business sends one message a second through another replica:
	// every one gets through.
	calmClient := heraldv1.NewMessagingServiceClient(conns[1])
	calmOK := 0
	for i := 0; time.Since(start) < span-time.Second; i++ {
		if _, err := calmClient.Send(bearer(calm), message(fmt.Sprint("c", i), people[i%len(people)])); err != nil {
			t.Errorf("the calm business was refused: %v", err)
		} else {
			calmOK++
		}
		time.Sleep(time.Second)
	}
	wg.Wait()
	elapsed := time.Since(start)
	// L, the most one gateway holds: max(1, ⌊B/(2·N₀)⌋) with N₀ = --replicas (package
	// ratelimit's doc).
	l := max(1, burst/(2*3))
	ideal := rate*elapsed.Seconds() + burst
	bound := ideal + float64(3*l)
	got := float64(admitted.Load())
	t.Logf("3 replicas, R=%v/s, B=%d, L=%d, %v: admitted %v (refused %d); R·T+B = %.0f; bound R·T+B+N·L = %.0f; calm business %d/%d accepted",
		rate, burst, l, elapsed.Round(time.Millisecond), got, refused.Load(), ideal, bound, calmOK, calmOK)
	if got > bound {
		t.Fatalf("admitted %v, over the bound %.0f", got, bound)
	}
	if got < 0.9*rate*span.Seconds() {
		t.Fatalf("admitted %v, well under R·T = %.0f", got, rate*span.Seconds())
	}
}

func retryDelay(err error) time.Duration {
	for _, d := range status.Convert(err).Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			return ri.RetryDelay.AsDuration()
		}
	}
	return 10 * time.Millisecond
}

// x25519Key is a fresh X25519 public key, which registration accepts.
func x25519Key(t *testing.T) []byte {
	k, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k.PublicKey().Bytes()
}
