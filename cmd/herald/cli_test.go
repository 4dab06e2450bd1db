package main

// These tests run the CLI in-process against a small fake gateway over real gRPC on
// loopback: enough of Herald's behaviour to walk the README's story without Redis or
// the real server, and to hand a device deliveries no real gateway would.
// story_test.go runs the same story on the real gateway.

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

	"github.com/heraldhq/herald/e2e"
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
	blocked map[string]bool                  // phone + " " + business id
	acks    map[string]bool                  // device id + " " + message id → read
	refused map[string]heraldv1.RejectReason // device id + " " + message id → why
	nextMsg int
	// signingKey is the business's registered Ed25519 public key.
	signingKey []byte
}

type fakeDevice struct {
	id, token, phone string
	publicKey        []byte
	keyID            string
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
	st := &fakeState{auth: map[string]string{}, blocked: map[string]bool{}, acks: map[string]bool{},
		refused: map[string]heraldv1.RejectReason{}}
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

// ReplaceSigningKey is the operator's replacement of the business's key; the fake
// keeps one business, and no chain.
func (f *fakeAdmin) ReplaceSigningKey(_ context.Context, req *heraldv1.ReplaceSigningKeyRequest) (*heraldv1.ReplaceSigningKeyResponse, error) {
	f.st.mu.Lock()
	defer f.st.mu.Unlock()
	f.st.signingKey = req.GetPublicKey()
	return &heraldv1.ReplaceSigningKeyResponse{KeyId: e2e.KeyID(req.GetPublicKey())}, nil
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
		keyID:     e2e.KeyID(req.GetPublicKey()),
		alg:       req.GetKeyAlgorithm(),
	}
	f.st.devices = append(f.st.devices, d)
	return &heraldv1.RegisterDeviceResponse{DeviceId: d.id, DeviceToken: d.token, KeyId: d.keyID}, nil
}

func (f *fakeRecipient) Receive(_ *heraldv1.ReceiveRequest, stream grpc.ServerStreamingServer[heraldv1.ReceiveResponse]) error {
	f.st.mu.Lock()
	d, err := f.st.device(stream.Context())
	var queued []*heraldv1.Delivery
	if err == nil {
		for _, m := range d.mailbox {
			_, acked := f.st.acks[d.id+" "+m.GetMessageId()]
			if _, refused := f.st.refused[d.id+" "+m.GetMessageId()]; !acked && !refused {
				queued = append(queued, m)
			}
		}
	}
	f.st.mu.Unlock()
	if err != nil {
		return err
	}
	for _, m := range queued {
		if err := stream.Send(&heraldv1.ReceiveResponse{Item: &heraldv1.ReceiveResponse_Delivery{Delivery: m}}); err != nil {
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
	for _, r := range req.GetRejections() {
		f.st.refused[d.id+" "+r.GetMessageId()] = r.GetReason()
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
		resp.Devices = append(resp.Devices, &heraldv1.Device{DeviceId: d.id, PublicKey: d.publicKey, KeyAlgorithm: d.alg, KeyId: d.keyID})
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
	envelopes := map[string]*heraldv1.Envelope{}
	for _, e := range m.GetEnvelopes() {
		envelopes[e.GetDeviceId()] = e
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
			Ciphertext:          envelopes[d.id].GetCiphertext(),
			KeyId:               envelopes[d.id].GetKeyId(),
			Body:                m.GetBody(),
			BusinessSigningKey:  f.st.signingKey,
			ClientMessageId:     m.GetClientMessageId(),
		})
	}
	return &heraldv1.SendResponse{Result: &heraldv1.Result{Outcome: heraldv1.Outcome_OUTCOME_ACCEPTED, MessageId: id}}, nil
}

func (f *fakeMessaging) SetSigningKey(_ context.Context, req *heraldv1.SetSigningKeyRequest) (*heraldv1.SetSigningKeyResponse, error) {
	f.st.mu.Lock()
	defer f.st.mu.Unlock()
	if f.st.signingKey != nil && !bytes.Equal(f.st.signingKey, req.GetPublicKey()) &&
		e2e.VerifyEndorsement(f.st.signingKey, fakeBusiness, req.GetPublicKey(), req.GetEndorsement()) != nil {
		st, _ := status.New(codes.FailedPrecondition, "the business has another signing key").WithDetails(
			&errdetails.ErrorInfo{Reason: "SIGNING_KEY_EXISTS"})
		return nil, st.Err()
	}
	f.st.signingKey = req.GetPublicKey()
	return &heraldv1.SetSigningKeyResponse{}, nil
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

// savedDevice reads the SDK's part of a device's state file.
func savedDevice(t *testing.T, path string) (deviceState, struct {
	ID    string `json:"device_id"`
	Token string `json:"token"`
	Keys  []struct {
		Private []byte `json:"private"`
	} `json:"keys"`
}) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var saved deviceState
	if err := json.Unmarshal(b, &saved); err != nil {
		t.Fatal(err)
	}
	var dev struct {
		ID    string `json:"device_id"`
		Token string `json:"token"`
		Keys  []struct {
			Private []byte `json:"private"`
		} `json:"keys"`
	}
	if err := json.Unmarshal(saved.Device, &dev); err != nil {
		t.Fatal(err)
	}
	return saved, dev
}

// TestWalkThrough is the README's story: an operator sets up a business, a person
// registers two devices, the business sends, both devices read it, the person blocks
// the business and its next message is rejected.
func TestWalkThrough(t *testing.T) {
	t.Parallel()
	st, addr := startFake(t)
	state := t.TempDir()
	vars := map[string]string{
		"HERALD_ADDR":        addr,
		"HERALD_ADMIN_ADDR":  addr, // the fake serves AdminService beside the rest
		"HERALD_STATE":       state,
		"HERALD_ADMIN_TOKEN": "adm",
		"HERALD_API_KEY":     fakeAPIKey,
		"HERALD_BUSINESS_ID": fakeBusiness,
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

	for i, name := range []string{"phone", "laptop"} {
		out := mustHerald(t, exitOK, vars, "device", "register", "--phone", phone, "--code", code, "--name", name)
		path := filepath.Join(state, name+".json")
		if !strings.Contains(out, path) {
			t.Errorf("register did not say where the state went:\n%s", out)
		}
		saved, dev := savedDevice(t, path)
		if dev.ID != fmt.Sprintf("d_%d", i+1) || dev.Token != fmt.Sprintf("hd_%d", i+1) || len(dev.Keys) != 1 || len(dev.Keys[0].Private) == 0 || saved.Addr != addr {
			t.Errorf("state of %s: %+v, %+v", name, saved, dev)
		}
		if strings.Contains(out, dev.Token) || strings.Contains(out, fmt.Sprintf("%x", dev.Keys[0].Private)) {
			t.Errorf("register printed a secret:\n%s", out)
		}
	}
	if got := st.authOf(heraldv1.RecipientService_RegisterDevice_FullMethodName); got != "" {
		t.Errorf("RegisterDevice sent authorization %q; the code is the credential", got)
	}
	if code, _, stderr := herald(t, vars, "device", "register", "--phone", phone, "--code", code, "--name", "phone"); code != exitError || !strings.Contains(stderr, "already registered") {
		t.Errorf("registering a taken name: exit %d, %s", code, stderr)
	}

	exit, out, stderr := herald(t, vars, "send", "--to", phone, "--category", "transactional", "--kind", "receipt",
		"--text", "Your order #1234 has shipped.", "--id", "order-1234")
	if exit != exitOK || !strings.Contains(out, "ACCEPTED") || !strings.Contains(out, "m_1") || !strings.Contains(out, "d_1, d_2") {
		t.Errorf("send: exit %d\n%s%s", exit, out, stderr)
	}
	// The first send made the business's signing key, registered it and kept it.
	keyFile := filepath.Join(state, "business-"+fakeBusiness+".key")
	if fi, err := os.Stat(keyFile); err != nil || fi.Mode().Perm() != 0o600 || !strings.Contains(stderr, keyFile) {
		t.Errorf("signing key file: %v, %v; stderr %q", fi, err, stderr)
	}
	if seed, _ := os.ReadFile(keyFile); len(st.signingKey) != 32 || len(seed) != 32 {
		t.Errorf("registered a %d-byte key, saved %d bytes", len(st.signingKey), len(seed))
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
			got.Category != "CATEGORY_TRANSACTIONAL" || got.Kind != "KIND_RECEIPT" || got.ClientMessageID != "order-1234" || got.Error != "" {
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

	delete(vars, "HERALD_BUSINESS_ID")
	if code, _, stderr := herald(t, vars, "send", "--to", phone, "--category", "transactional", "--kind", "receipt", "--text", "x"); code != exitUsage || !strings.Contains(stderr, "--business") {
		t.Errorf("send without a business id: exit %d, %s", code, stderr)
	}
}

// TestReceiveRefusesWhatFailsVerification: a delivery that is not what the business
// signed is never shown. A forgery is reported refused, with its reason, so that it
// does not come back and the business sees it failed; an envelope of an unknown format
// stays queued for a newer herald.
func TestReceiveRefusesWhatFailsVerification(t *testing.T) {
	t.Parallel()
	st, addr := startFake(t)
	state := t.TempDir()
	vars := map[string]string{"HERALD_ADDR": addr, "HERALD_STATE": state, "HERALD_API_KEY": fakeAPIKey, "HERALD_BUSINESS_ID": fakeBusiness}
	mustHerald(t, exitOK, vars, "device", "register", "--phone", "+15550000001", "--code", fakeCode)
	mustHerald(t, exitOK, vars, "send", "--to", "+15550000001", "--category", "transactional", "--kind", "receipt", "--text", "genuine")
	mustHerald(t, exitOK, vars, "device", "receive", "--ack")

	// Someone who has the API key but not the signing key, and a sender of another
	// format.
	forger, _ := e2e.GenerateSigningKey()
	st.mu.Lock()
	d := st.devices[0]
	h := e2e.Header{BusinessID: fakeBusiness, Category: e2e.Transactional, Kind: e2e.Receipt, ClientMessageID: "forged", SentTime: time.Now()}
	sealed, err := e2e.Seal(forger, h, []byte("pay here"), []e2e.Recipient{{DeviceID: d.id, PublicKey: d.publicKey, Algorithm: e2e.Algorithm(d.alg)}})
	if err != nil {
		t.Fatal(err)
	}
	d.mailbox = append(d.mailbox,
		&heraldv1.Delivery{MessageId: "m_forged", BusinessId: fakeBusiness, BusinessDisplayName: "Acme", Category: heraldv1.Category_CATEGORY_TRANSACTIONAL,
			Kind: heraldv1.Kind_KIND_RECEIPT, ClientMessageId: "forged", Body: sealed.Body, Ciphertext: sealed.Wraps[d.id], BusinessSigningKey: st.signingKey},
		&heraldv1.Delivery{MessageId: "m_x", BusinessId: fakeBusiness, BusinessDisplayName: "Acme", Ciphertext: []byte("not hpke"), BusinessSigningKey: st.signingKey},
		&heraldv1.Delivery{MessageId: "m_esc", BusinessId: fakeBusiness + "\x1b[2J", BusinessDisplayName: "Acme\x1b[2J", Ciphertext: []byte("x")})
	st.mu.Unlock()

	code, out, stderr := herald(t, vars, "device", "receive", "--ack")
	if code != exitError || !strings.Contains(out, "m_forged") || !strings.Contains(out, "bad signature") || strings.Contains(out, "pay here") ||
		!strings.Contains(out, "unsupported format version") || !strings.Contains(stderr, "2 of 3 messages failed verification") || !strings.Contains(stderr, "1 of 3 messages could not be read and stay queued") {
		t.Errorf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, stderr)
	}
	if strings.Contains(out, "\x1b") {
		t.Errorf("a business's id reached the terminal raw: %q", out)
	}
	st.mu.Lock()
	forged, odd, esc := st.refused["d_1 m_forged"], st.refused["d_1 m_x"], st.refused["d_1 m_esc"]
	_, forgedAcked := st.acks["d_1 m_forged"]
	_, escAcked := st.acks["d_1 m_esc"]
	st.mu.Unlock()
	if forged != heraldv1.RejectReason_REJECT_REASON_BAD_SIGNATURE || odd != heraldv1.RejectReason_REJECT_REASON_UNSPECIFIED ||
		esc != heraldv1.RejectReason_REJECT_REASON_UNKNOWN_KEY || forgedAcked || escAcked {
		t.Errorf("refused: forgery %v (want BAD_SIGNATURE), unknown format %v (want none: it stays queued), unverifiable %v (want UNKNOWN_KEY); acked as delivered: forgery %v, unverifiable %v (want neither)",
			forged, odd, esc, forgedAcked, escAcked)
	}
}

// TestBusinessKeyChange: a business that lost its key file cannot send, nor replace
// the key by itself; it makes a new key, the operator puts it in place, and the
// device withholds its messages until the person trusts the new key.
func TestBusinessKeyChange(t *testing.T) {
	t.Parallel()
	_, addr := startFake(t)
	state := t.TempDir()
	vars := map[string]string{"HERALD_ADDR": addr, "HERALD_ADMIN_ADDR": addr, "HERALD_STATE": state,
		"HERALD_API_KEY": fakeAPIKey, "HERALD_BUSINESS_ID": fakeBusiness, "HERALD_ADMIN_TOKEN": "adm"}
	send := func(want int, text string) string {
		t.Helper()
		code, out, stderr := herald(t, vars, "send", "--to", "+15550000001", "--category", "transactional", "--kind", "receipt",
			"--text", text)
		if code != want {
			t.Fatalf("send %q: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", text, code, want, out, stderr)
		}
		return stderr
	}
	mustHerald(t, exitOK, vars, "device", "register", "--phone", "+15550000001", "--code", fakeCode)
	send(exitOK, "first")
	mustHerald(t, exitOK, vars, "device", "receive", "--ack")

	if err := os.Remove(filepath.Join(state, "business-"+fakeBusiness+".key")); err != nil {
		t.Fatal(err)
	}
	if stderr := send(exitError, "second"); !strings.Contains(stderr, "herald key new") ||
		!strings.Contains(stderr, "herald admin replace-signing-key") {
		t.Fatalf("send without the key does not say how to have it replaced:\n%s", stderr)
	}
	if _, err := os.Stat(filepath.Join(state, "business-"+fakeBusiness+".key")); err == nil {
		t.Fatal("a refused send left a key file behind")
	}
	pub := strings.TrimSpace(mustHerald(t, exitOK, vars, "key", "new"))
	mustHerald(t, exitError, vars, "key", "new") // the key is made once
	if stderr := send(exitError, "second"); !strings.Contains(stderr, "not business "+fakeBusiness+"'s current key") {
		t.Fatalf("send before the operator put the new key in place:\n%s", stderr)
	}
	mustHerald(t, exitOK, vars, "admin", "replace-signing-key", fakeBusiness, "--key", pub)
	send(exitOK, "second")
	code, out, stderr := herald(t, vars, "device", "receive", "--ack")
	if code != exitError || strings.Contains(out, "second") || !strings.Contains(stderr, "herald device trust "+fakeBusiness+" --key "+pub) {
		t.Fatalf("receive under a new key: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, stderr)
	}
	trust := stderr[strings.Index(stderr, "herald device trust"):]
	args := strings.Fields(strings.SplitN(trust, "\n", 2)[0])[1:]
	mustHerald(t, exitOK, vars, args...)
	if out := mustHerald(t, exitOK, vars, "device", "receive", "--ack"); !strings.Contains(out, "second") {
		t.Errorf("after trusting the key: %q", out)
	}
}

func TestGatewayErrorsAreExplained(t *testing.T) {
	t.Parallel()
	_, addr := startFake(t)
	state := t.TempDir()
	vars := map[string]string{"HERALD_ADDR": addr, "HERALD_ADMIN_ADDR": addr, "HERALD_STATE": state, "HERALD_TOKEN": "adm"}

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
	code, _, stderr = herald(t, vars, "--admin-addr", "127.0.0.1:1", "admin", "get-business", fakeBusiness)
	if code != exitError || !strings.Contains(stderr, "UNAVAILABLE") {
		t.Errorf("exit %d, stderr: %s", code, stderr)
	}
}
