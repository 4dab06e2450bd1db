package main

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"fmt"
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
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

const (
	replicaAdmin  = "replica-admin-token-0123456789"
	replicaSecret = "replica-secret-0123456789"
)

// replica is one heraldd process of a test, on an address of its own that outlives
// the process: a test can kill it and start it again where its clients expect it.
type replica struct {
	t    *testing.T
	bin  string
	args []string
	env  []string
	// Addr is the gRPC address.
	Addr string
	// Conn is a connection to Addr, kept across restarts; it reconnects within a
	// second of the process coming back.
	Conn *grpc.ClientConn
	// AdminConn is a connection to the admin listener, kept across restarts as Conn is.
	AdminConn *grpc.ClientConn

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
}

// startReplicas builds heraldd and starts n processes on one Redis, stopped
// (interrupted) when the test ends. env adds to or overrides the environment they are
// given (e.g. "HERALD_LOG_LEVEL=error").
func startReplicas(t *testing.T, redisURL string, n int, env ...string) []*replica {
	t.Helper()
	bin := buildHeraldd(t)
	var rs []*replica
	for range n {
		addr, conn := reserve(t)
		adminAddr, adminConn := reserve(t)
		r := &replica{t: t, bin: bin, Addr: addr, Conn: conn, AdminConn: adminConn,
			args: []string{"--listen", addr, "--admin-listen", adminAddr, "--redis", redisURL, "--replicas", fmt.Sprint(n)},
			env: append([]string{"HERALD_SECRET=" + replicaSecret, "HERALD_ADMIN_TOKEN=" + replicaAdmin,
				"HERALD_LOG_LEVEL=warn", "HERALD_PAIR_INTERVAL=0", "HERALD_RECIPIENT_MARKETING_CAP=0"}, env...)}
		r.Start()
		t.Cleanup(r.stop)
		rs = append(rs, r)
	}
	return rs
}

// buildHeraldd builds heraldd for a test and returns the binary's path.
func buildHeraldd(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "heraldd")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build heraldd: %v\n%s", err, out)
	}
	return bin
}

// reserve picks a free loopback address for a process to listen on, and a
// connection to it that reconnects within a second whenever the process is back.
func reserve(t *testing.T) (string, *grpc.ClientConn) {
	t.Helper()
	addr := redistest.FreeAddr(t) // the process may be killed and started again on it
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithConnectParams(grpc.ConnectParams{MinConnectTimeout: time.Second,
			Backoff: backoff.Config{BaseDelay: 50 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second}}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return addr, conn
}

// Start starts the process (again) and waits until it answers.
func (r *replica) Start() {
	r.t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	cmd := exec.Command(r.bin, r.args...)
	cmd.Env = append(os.Environ(), r.env...)
	cmd.Stderr = &lineLog{t: r.t, prefix: "heraldd " + r.Addr + ": "}
	if err := cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	r.cmd, r.exited = cmd, exited
	deadline := time.Now().Add(20 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(bearer(replicaAdmin), time.Second)
		_, err := heraldv1.NewAdminServiceClient(r.AdminConn).GetBusiness(ctx, &heraldv1.GetBusinessRequest{BusinessId: "biz_none"})
		cancel()
		if status.Code(err) == codes.NotFound {
			return
		}
		select {
		case <-exited:
			r.t.Fatalf("heraldd on %s exited: %v", r.Addr, cmd.ProcessState)
		default:
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("heraldd on %s did not come up: %v", r.Addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Kill kills the process (SIGKILL): it ends mid-call, as a crashed machine does,
// with nothing flushed or drained.
func (r *replica) Kill() {
	r.t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.cmd.Process.Kill(); err != nil {
		r.t.Fatal(err)
	}
	<-r.exited
}

// stop interrupts the process, as a deploy does, and waits for it to exit.
func (r *replica) stop() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cmd.Process.Signal(os.Interrupt)
	select {
	case <-r.exited:
	case <-time.After(10 * time.Second):
		r.cmd.Process.Kill()
		<-r.exited
	}
}

// lineLog logs what a process writes, a line at a time, up to maxLines lines: a
// process that cannot reach Redis writes a line per attempt.
type lineLog struct {
	t      *testing.T
	prefix string
	buf    []byte
	lines  int
}

const maxLines = 50

func (l *lineLog) Write(p []byte) (int, error) {
	l.buf = append(l.buf, p...)
	for {
		i := bytes.IndexByte(l.buf, '\n')
		if i < 0 {
			return len(p), nil
		}
		switch l.lines++; {
		case l.lines <= maxLines:
			l.t.Log(l.prefix + string(l.buf[:i]))
		case l.lines == maxLines+1:
			l.t.Log(l.prefix + "(further lines not shown)")
		}
		l.buf = l.buf[i+1:]
	}
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
	replicas := startReplicas(t, rs.URL, 3)
	admin := heraldv1.NewAdminServiceClient(replicas[0].AdminConn)
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
		r, err := heraldv1.NewRecipientServiceClient(replicas[i%3].Conn).RegisterDevice(context.Background(), &heraldv1.RegisterDeviceRequest{
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
	for _, r := range replicas {
		mc := heraldv1.NewMessagingServiceClient(r.Conn)
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
	calmClient := heraldv1.NewMessagingServiceClient(replicas[1].Conn)
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
