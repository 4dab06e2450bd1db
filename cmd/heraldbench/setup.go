package main

import (
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"fmt"
	"sync/atomic"

	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
)

// ciphertextSize is the size of every envelope heraldbench sends.
const ciphertextSize = 128

// recipient is a person with one registered device, as heraldbench sends to it.
type recipient struct {
	number string
	device string
	// token is the device's token, for its Receive stream and its acks.
	token string
	// keyID is the id of the device's key, which its envelopes name.
	keyID string
	// ciphertext is random bytes standing for what a business would seal to the
	// device: the gateway never looks inside.
	ciphertext []byte
}

// areaCodes spread recipients over numbers that libphonenumber takes as valid.
var areaCodes = []string{"415", "212", "312", "646", "617", "206", "303", "512"}

// maxRecipients is how many distinct numbers numberAt has.
var maxRecipients = 10_000 * len(areaCodes)

// numberAt is the i-th phone number heraldbench registers.
func numberAt(i int) string {
	return fmt.Sprintf("+1%s555%04d", areaCodes[i/10_000], i%10_000)
}

// dial connects to a local listener in plaintext. Each call makes a connection of its
// own, so that callers spread over several as they would in production.
func dial(addr string) (*grpc.ClientConn, error) {
	return grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
}

// bearer is ctx carrying token as the call's credential.
func bearer(ctx context.Context, token string) context.Context {
	return metadata.NewOutgoingContext(ctx, metadata.Pairs("authorization", "Bearer "+token))
}

// createBusiness creates the business heraldbench sends as, with an API key and
// limits raised so high that they never bind (so the whole limit path still runs).
func (b *bench) createBusiness(ctx context.Context) error {
	admin := heraldv1.NewAdminServiceClient(b.admin)
	actx := bearer(ctx, b.adminToken)
	biz, err := admin.CreateBusiness(actx, &heraldv1.CreateBusinessRequest{DisplayName: "heraldbench"})
	if err != nil {
		return fmt.Errorf("create the business: %w", err)
	}
	key, err := admin.IssueApiKey(actx, &heraldv1.IssueApiKeyRequest{BusinessId: biz.BusinessId})
	if err != nil {
		return fmt.Errorf("issue an API key: %w", err)
	}
	if _, err := admin.SetBusinessLimits(actx, &heraldv1.SetBusinessLimitsRequest{BusinessId: biz.BusinessId,
		MessagesPerSecond: 1e6, Burst: 1e6, UnlimitedUniqueRecipients: true}); err != nil {
		return fmt.Errorf("raise the business's limits: %w", err)
	}
	b.apiKey = key.ApiKey
	return nil
}

// registerWorkers is how many registrations run at once: the gateway reads at most 4
// calls that need no credentials from one client address at a time.
const registerWorkers = 4

// register registers one device for each of count numbers from the first-th on, as a
// phone would: a verification code issued by the operator, then RegisterDevice with
// a fresh X25519 public key.
func (b *bench) register(ctx context.Context, first, count int) ([]recipient, error) {
	admin := heraldv1.NewAdminServiceClient(b.admin)
	devices := heraldv1.NewRecipientServiceClient(b.herald[0])
	actx := bearer(ctx, b.adminToken)
	out := make([]recipient, count)
	var next atomic.Int64
	g, gctx := newGroup(ctx)
	for range registerWorkers {
		g.Go(func() error {
			for i := int(next.Add(1) - 1); i < count && gctx.Err() == nil; i = int(next.Add(1) - 1) {
				r, err := registerOne(gctx, admin, devices, actx, numberAt(first+i))
				if err != nil {
					return err
				}
				out[i] = r
			}
			return gctx.Err()
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return out, nil
}

func registerOne(ctx context.Context, admin heraldv1.AdminServiceClient, devices heraldv1.RecipientServiceClient, actx context.Context, number string) (recipient, error) {
	code, err := admin.IssueVerificationCode(actx, &heraldv1.IssueVerificationCodeRequest{PhoneNumber: number})
	if err != nil {
		return recipient{}, fmt.Errorf("issue a verification code: %w", err)
	}
	k, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return recipient{}, err
	}
	d, err := devices.RegisterDevice(ctx, &heraldv1.RegisterDeviceRequest{PhoneNumber: number, Code: code.Code,
		PublicKey: k.PublicKey().Bytes(), KeyAlgorithm: heraldv1.KeyAlgorithm_KEY_ALGORITHM_HPKE_X25519})
	if err != nil {
		return recipient{}, fmt.Errorf("register a device: %w", err)
	}
	if d.Pending {
		return recipient{}, fmt.Errorf("the device of %s is pending: the number had a device already", number)
	}
	ct := make([]byte, ciphertextSize)
	_, _ = rand.Read(ct)
	return recipient{number: number, device: d.DeviceId, token: d.DeviceToken, keyID: d.KeyId, ciphertext: ct}, nil
}

// message is a transactional receipt to r's one device, as the gateway validates it:
// one envelope for the device, naming the key it was sealed to.
func message(r recipient, clientID string) *heraldv1.Message {
	return &heraldv1.Message{Recipient: r.number, Category: heraldv1.Category_CATEGORY_TRANSACTIONAL,
		Kind: heraldv1.Kind_KIND_RECEIPT, ClientMessageId: clientID,
		Envelopes: []*heraldv1.Envelope{{DeviceId: r.device, Ciphertext: r.ciphertext, KeyId: r.keyID}}}
}

// accepted is an error unless res says the message was admitted.
func accepted(res *heraldv1.Result) error {
	if res.GetOutcome() != heraldv1.Outcome_OUTCOME_ACCEPTED || res.GetDuplicate() {
		return fmt.Errorf("a message was not admitted: %v", res)
	}
	return nil
}
