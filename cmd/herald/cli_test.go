package main

// These tests run the CLI in-process against a small fake gateway over real gRPC on
// loopback: enough of Herald's behaviour to walk the README's story without Redis or
// the real server.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// fakeState is the fake gateway's memory, shared by its three services.
type fakeState struct {
	mu      sync.Mutex
	auth    map[string]string // full method name → last authorization metadata
	devices []*fakeDevice
	blocked map[string]bool // phone + " " + business id
	acks    map[string]bool // device id + " " + message id → read
	nextMsg int
}

type fakeDevice struct {
	id, token, phone string
	publicKey        []byte
	alg              heraldv1.KeyAlgorithm
	mailbox          []*heraldv1.Delivery
}

const (
	fakeCode     = "12345678"
	fakeBusiness = "b_1"
	fakeAPIKey   = "hk_k1_secret"
)

// startFake serves the fake gateway on loopback and returns its address.
func startFake(t *testing.T) (*fakeState, string) {
	t.Helper()
	st := &fakeState{auth: map[string]string{}, blocked: map[string]bool{}, acks: map[string]bool{}}
	record := func(ctx context.Context, method string) {
		md, _ := metadata.FromIncomingContext(ctx)
		st.mu.Lock()
		defer st.mu.Unlock()
		st.auth[method] = strings.Join(md.Get("authorization"), ",")
	}
	srv := grpc.NewServer(
		grpc.UnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			record(ctx, info.FullMethod)
			return h(ctx, req)
		}),
		grpc.StreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			record(ss.Context(), info.FullMethod)
			return h(srv, ss)
		}),
	)
	heraldv1.RegisterAdminServiceServer(srv, &fakeAdmin{st: st})
	heraldv1.RegisterMessagingServiceServer(srv, &fakeMessaging{st: st})
	heraldv1.RegisterRecipientServiceServer(srv, &fakeRecipient{st: st})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	return st, lis.Addr().String()
}

func (st *fakeState) authOf(method string) string {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.auth[method]
}

// device finds the calling device by its token; the caller holds mu.
func (st *fakeState) device(ctx context.Context) (*fakeDevice, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	for _, d := range st.devices {
		if slices.Contains(md.Get("authorization"), "Bearer "+d.token) {
			return d, nil
		}
	}
	return nil, status.Error(codes.Unauthenticated, "unknown device token")
}

type fakeAdmin struct {
	heraldv1.UnimplementedAdminServiceServer
	st *fakeState
}

func (f *fakeAdmin) CreateBusiness(_ context.Context, req *heraldv1.CreateBusinessRequest) (*heraldv1.CreateBusinessResponse, error) {
	if len(req.GetDisplayName()) > 100 {
		st, err := status.New(codes.InvalidArgument, "invalid request").WithDetails(&errdetails.BadRequest{
			FieldViolations: []*errdetails.BadRequest_FieldViolation{{Field: "display_name", Description: "longer than 100 characters"}},
		})
		if err != nil {
			return nil, err
		}
		return nil, st.Err()
	}
	return &heraldv1.CreateBusinessResponse{BusinessId: fakeBusiness}, nil
}

func (f *fakeAdmin) IssueApiKey(context.Context, *heraldv1.IssueApiKeyRequest) (*heraldv1.IssueApiKeyResponse, error) {
	return &heraldv1.IssueApiKeyResponse{ApiKey: fakeAPIKey, KeyId: "k1"}, nil
}

func (f *fakeAdmin) IssueVerificationCode(context.Context, *heraldv1.IssueVerificationCodeRequest) (*heraldv1.IssueVerificationCodeResponse, error) {
	return &heraldv1.IssueVerificationCodeResponse{Code: fakeCode, ExpireTime: timestamppb.New(time.Now().Add(10 * time.Minute))}, nil
}

type fakeRecipient struct {
	heraldv1.UnimplementedRecipientServiceServer
	st *fakeState
}

func (f *fakeRecipient) RegisterDevice(_ context.Context, req *heraldv1.RegisterDeviceRequest) (*heraldv1.RegisterDeviceResponse, error) {
	if req.GetCode() != fakeCode {
		st, _ := status.New(codes.PermissionDenied, "wrong verification code").WithDetails(&errdetails.ErrorInfo{Reason: "CODE_INVALID"})
		return nil, st.Err()
	}
	f.st.mu.Lock()
	defer f.st.mu.Unlock()
	n := len(f.st.devices) + 1
	d := &fakeDevice{
		id:        fmt.Sprintf("d_%d", n),
		token:     fmt.Sprintf("hd_%d", n),
		phone:     req.GetPhoneNumber(),
		publicKey: req.GetPublicKey(),
		alg:       req.GetKeyAlgorithm(),
	}
	f.st.devices = append(f.st.devices, d)
	return &heraldv1.RegisterDeviceResponse{DeviceId: d.id, DeviceToken: d.token}, nil
}

func (f *fakeRecipient) Receive(_ *heraldv1.ReceiveRequest, stream grpc.ServerStreamingServer[heraldv1.Delivery]) error {
	f.st.mu.Lock()
	d, err := f.st.device(stream.Context())
	var queued []*heraldv1.Delivery
	if err == nil {
		for _, m := range d.mailbox {
			if _, acked := f.st.acks[d.id+" "+m.GetMessageId()]; !acked {
				queued = append(queued, m)
			}
		}
	}
	f.st.mu.Unlock()
	if err != nil {
		return err
	}
	for _, m := range queued {
		if err := stream.Send(m); err != nil {
			return err
		}
	}
	// Like the gateway, hold the stream open for new deliveries.
	<-stream.Context().Done()
	return nil
}

func (f *fakeRecipient) Ack(ctx context.Context, req *heraldv1.AckRequest) (*heraldv1.AckResponse, error) {
	f.st.mu.Lock()
	defer f.st.mu.Unlock()
	d, err := f.st.device(ctx)
	if err != nil {
		return nil, err
	}
	for _, id := range req.GetMessageIds() {
		f.st.acks[d.id+" "+id] = req.GetRead()
	}
	return &heraldv1.AckResponse{}, nil
}

func (f *fakeRecipient) Block(ctx context.Context, req *heraldv1.BlockRequest) (*heraldv1.BlockResponse, error) {
	f.st.mu.Lock()
	defer f.st.mu.Unlock()
	d, err := f.st.device(ctx)
	if err != nil {
		return nil, err
	}
	f.st.blocked[d.phone+" "+req.GetBusinessId()] = true
	return &heraldv1.BlockResponse{}, nil
}

type fakeMessaging struct {
	heraldv1.UnimplementedMessagingServiceServer
	st *fakeState
}

// admit is the fake's policy: unknown numbers and blocks only.
func (f *fakeMessaging) admit(phone string) ([]*fakeDevice, heraldv1.Outcome) {
	var ds []*fakeDevice
	for _, d := range f.st.devices {
		if d.phone == phone {
			ds = append(ds, d)
		}
	}
	switch {
	case len(ds) == 0:
		return nil, heraldv1.Outcome_OUTCOME_UNKNOWN_RECIPIENT
	case f.st.blocked[phone+" "+fakeBusiness]:
		return nil, heraldv1.Outcome_OUTCOME_BLOCKED
	}
	return ds, heraldv1.Outcome_OUTCOME_ACCEPTED
}

func (f *fakeMessaging) LookupRecipient(_ context.Context, req *heraldv1.LookupRecipientRequest) (*heraldv1.LookupRecipientResponse, error) {
	f.st.mu.Lock()
	defer f.st.mu.Unlock()
	ds, outcome := f.admit(req.GetRecipient())
	resp := &heraldv1.LookupRecipientResponse{Outcome: outcome}
	for _, d := range ds {
		resp.Devices = append(resp.Devices, &heraldv1.Device{DeviceId: d.id, PublicKey: d.publicKey, KeyAlgorithm: d.alg})
	}
	return resp, nil
}

func (f *fakeMessaging) Send(_ context.Context, req *heraldv1.SendRequest) (*heraldv1.SendResponse, error) {
	f.st.mu.Lock()
	defer f.st.mu.Unlock()
	m := req.GetMessage()
	ds, outcome := f.admit(m.GetRecipient())
	if outcome != heraldv1.Outcome_OUTCOME_ACCEPTED {
		return &heraldv1.SendResponse{Result: &heraldv1.Result{Outcome: outcome}}, nil
	}
	envelopes := map[string][]byte{}
	for _, e := range m.GetEnvelopes() {
		envelopes[e.GetDeviceId()] = e.GetCiphertext()
	}
	var missing []string
	for _, d := range ds {
		if envelopes[d.id] == nil {
			missing = append(missing, d.id)
		}
	}
	if len(missing) > 0 || len(envelopes) != len(ds) {
		return &heraldv1.SendResponse{Result: &heraldv1.Result{Outcome: heraldv1.Outcome_OUTCOME_STALE_DEVICES, MissingDeviceIds: missing}}, nil
	}
	f.st.nextMsg++
	id := fmt.Sprintf("m_%d", f.st.nextMsg)
	for _, d := range ds {
		d.mailbox = append(d.mailbox, &heraldv1.Delivery{
			MessageId:           id,
			BusinessId:          fakeBusiness,
			BusinessDisplayName: "Acme",
			Category:            m.GetCategory(),
			Kind:                m.GetKind(),
			SentTime:            timestamppb.Now(),
			ExpireTime:          timestamppb.New(time.Now().Add(24 * time.Hour)),
			Ciphertext:          envelopes[d.id],
			ClientMessageId:     m.GetClientMessageId(),
		})
	}
	return &heraldv1.SendResponse{Result: &heraldv1.Result{Outcome: heraldv1.Outcome_OUTCOME_ACCEPTED, MessageId: id}}, nil
}

// herald runs the CLI in-process with vars as its whole environment.
func herald(t *testing.T, vars map[string]string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(t.Context(), args, env(vars), &out, &errOut)
	return code, out.String(), errOut.String()
}

// mustHerald runs the CLI and fails the test unless it exits with want.
func mustHerald(t *testing.T, want int, vars map[string]string, args ...string) string {
	t.Helper()
	code, stdout, stderr := herald(t, vars, args...)
	if code != want {
		t.Fatalf("herald %q exited %d, want %d\nstdout:\n%s\nstderr:\n%s", args, code, want, stdout, stderr)
	}
	return stdout
}

// TestWalkThrough is the README's story: an operator sets up a business, a person
// registers two devices, the business sends, both devices read it, the person blocks
// the business and its next message is rejected.
func TestWalkThrough(t *testing.T) {
	st, addr := startFake(t)
	state := t.TempDir()
	vars := map[string]string{
		"HERALD_ADDR":        addr,
		"HERALD_STATE":       state,
		"HERALD_ADMIN_TOKEN": "adm",
		"HERALD_API_KEY":     fakeAPIKey,
		// A generic token for another purpose must not leak into device calls.
		"HERALD_TOKEN": "generic",
	}
	const phone = "+15551234567"

	if got := mustHerald(t, exitOK, vars, "admin", "create-business", "--name", "Acme"); got != fakeBusiness+"\n" {
		t.Errorf("create-business printed %q, want the id alone", got)
	}
	if got := st.authOf(heraldv1.AdminService_CreateBusiness_FullMethodName); got != "Bearer adm" {
		t.Errorf("admin call sent authorization %q", got)
	}
	if got := mustHerald(t, exitOK, vars, "admin", "issue-key", fakeBusiness); got != fakeAPIKey+"\n" {
		t.Errorf("issue-key printed %q, want the key alone", got)
	}
	code := strings.TrimSpace(mustHerald(t, exitOK, vars, "admin", "issue-code", phone))
	if code != fakeCode {
		t.Fatalf("issue-code printed %q", code)
	}

	for _, name := range []string{"phone", "laptop"} {
		out := mustHerald(t, exitOK, vars, "device", "register", "--phone", phone, "--code", code, "--name", name)
		path := filepath.Join(state, name+".json")
		if !strings.Contains(out, path) {
			t.Errorf("register did not say where the state went:\n%s", out)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var saved deviceState
		if err := json.Unmarshal(b, &saved); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(out, string(saved.PrivateKey)) || len(saved.PrivateKey) == 0 {
			t.Errorf("register printed the private key, or saved none:\n%s", out)
		}
		if !strings.Contains(out, saved.DeviceToken) || saved.Addr != addr {
			t.Errorf("register output or state wrong: %s\n%+v", out, saved)
		}
	}
	if got := st.authOf(heraldv1.RecipientService_RegisterDevice_FullMethodName); got != "" {
		t.Errorf("RegisterDevice sent authorization %q; the code is the credential", got)
	}
	if code, _, stderr := herald(t, vars, "device", "register", "--phone", phone, "--code", code, "--name", "phone"); code != exitError || !strings.Contains(stderr, "already registered") {
		t.Errorf("registering a taken name: exit %d, %s", code, stderr)
	}

	out := mustHerald(t, exitOK, vars, "send", "--to", phone, "--category", "transactional", "--kind", "receipt",
		"--text", "Your order #1234 has shipped.", "--id", "order-1234")
	if !strings.Contains(out, "ACCEPTED") || !strings.Contains(out, "m_1") || !strings.Contains(out, "d_1, d_2") {
		t.Errorf("send printed:\n%s", out)
	}
	if got := st.authOf(heraldv1.MessagingService_Send_FullMethodName); got != "Bearer "+fakeAPIKey {
		t.Errorf("send sent authorization %q", got)
	}

	for i, tt := range []struct{ name, flag string }{{"phone", "--ack"}, {"laptop", "--read"}} {
		out := mustHerald(t, exitOK, vars, "--json", "device", "receive", "--name", tt.name, tt.flag)
		var got delivered
		if err := json.Unmarshal([]byte(out), &got); err != nil {
			t.Fatalf("receive --json printed %q: %v", out, err)
		}
		if got.Text != "Your order #1234 has shipped." || got.MessageID != "m_1" || got.BusinessDisplayName != "Acme" ||
			got.Category != "CATEGORY_TRANSACTIONAL" || got.Kind != "KIND_RECEIPT" || got.ClientMessageID != "order-1234" {
			t.Errorf("%s received %+v", tt.name, got)
		}
		st.mu.Lock()
		read, acked := st.acks[fmt.Sprintf("d_%d m_1", i+1)]
		st.mu.Unlock()
		if !acked || read != (tt.flag == "--read") {
			t.Errorf("%s %s: acked %v, read %v", tt.name, tt.flag, acked, read)
		}
		if got := st.authOf(heraldv1.RecipientService_Receive_FullMethodName); got != fmt.Sprintf("Bearer hd_%d", i+1) {
			t.Errorf("receive as %s sent authorization %q; want the saved token", tt.name, got)
		}
	}
	// Acknowledged, nothing is left to read.
	if code, out, stderr := herald(t, vars, "device", "receive", "--name", "phone"); code != exitOK || out != "" || !strings.Contains(stderr, "no messages") {
		t.Errorf("second receive: exit %d, stdout %q, stderr %q", code, out, stderr)
	}

	if got := mustHerald(t, exitOK, vars, "device", "block", fakeBusiness, "--name", "phone"); got != "blocked "+fakeBusiness+"\n" {
		t.Errorf("block printed %q", got)
	}
	out = mustHerald(t, exitRejected, vars, "send", "--to", phone, "--category", "transactional", "--kind", "receipt", "--text", "Another")
	if !strings.Contains(out, "BLOCKED") {
		t.Errorf("send after block printed:\n%s", out)
	}
	out = mustHerald(t, exitRejected, vars, "--json", "send", "--to", phone, "--category", "transactional", "--kind", "receipt", "--text", "Another")
	var resp struct {
		Result struct{ Outcome string } `json:"result"`
	}
	if err := json.Unmarshal([]byte(out), &resp); err != nil || resp.Result.Outcome != "OUTCOME_BLOCKED" {
		t.Errorf("send --json after block printed %q (%v)", out, err)
	}
}

func TestReceiveKeepsWhatItCannotDecrypt(t *testing.T) {
	st, addr := startFake(t)
	vars := map[string]string{"HERALD_ADDR": addr, "HERALD_STATE": t.TempDir(), "HERALD_API_KEY": fakeAPIKey}
	mustHerald(t, exitOK, vars, "device", "register", "--phone", "+15550000001", "--code", fakeCode)
	// A business that encrypts with another format, or to another key.
	st.mu.Lock()
	st.devices[0].mailbox = append(st.devices[0].mailbox, &heraldv1.Delivery{
		MessageId: "m_x", BusinessId: fakeBusiness, BusinessDisplayName: "Acme\x1b[2J", Ciphertext: []byte("not hpke"),
	})
	st.mu.Unlock()

	code, out, stderr := herald(t, vars, "device", "receive", "--ack")
	if code != exitError || !strings.Contains(out, "cannot decrypt") || !strings.Contains(stderr, "left unacknowledged") {
		t.Errorf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, stderr)
	}
	if strings.Contains(out, "\x1b") {
		t.Errorf("a business's display name reached the terminal raw: %q", out)
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if len(st.acks) != 0 {
		t.Errorf("acknowledged an unreadable message: %v", st.acks)
	}
}

func TestGatewayErrorsAreExplained(t *testing.T) {
	_, addr := startFake(t)
	state := t.TempDir()
	vars := map[string]string{"HERALD_ADDR": addr, "HERALD_STATE": state, "HERALD_TOKEN": "adm"}

	code, _, stderr := herald(t, vars, "admin", "create-business", "--name", strings.Repeat("x", 101))
	want := "herald: INVALID_ARGUMENT: invalid request\n  invalid display_name: longer than 100 characters\n"
	if code != exitError || stderr != want {
		t.Errorf("exit %d, stderr:\n%s\nwant:\n%s", code, stderr, want)
	}

	code, _, stderr = herald(t, vars, "--json", "device", "register", "--phone", "+15550000001", "--code", "00000000")
	if code != exitError || !strings.Contains(stderr, `"code":"PERMISSION_DENIED"`) || !strings.Contains(stderr, "CODE_INVALID") {
		t.Errorf("exit %d, stderr: %s", code, stderr)
	}
	// A failed registration leaves no state behind.
	if entries, _ := os.ReadDir(state); len(entries) != 0 {
		t.Errorf("state dir after a failed registration: %v", entries)
	}

	// Nothing listening: UNAVAILABLE, not a hang.
	code, _, stderr = herald(t, vars, "--addr", "127.0.0.1:1", "admin", "get-business", fakeBusiness)
	if code != exitError || !strings.Contains(stderr, "UNAVAILABLE") {
		t.Errorf("exit %d, stderr: %s", code, stderr)
	}
}
