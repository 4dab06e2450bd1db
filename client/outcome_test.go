package client_test

import (
	"errors"
	"testing"
	"time"

	"github.com/heraldhq/herald/client"
	"github.com/heraldhq/herald/e2e"
	"github.com/heraldhq/herald/internal/relay"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// TestSendThatLostItsAnswerIsOutcomeUnknown: a gateway that admitted a message and
// died before it answered leaves the SDK without a word on what it did. The Send must
// say that the outcome is unknown, never that nothing was admitted, also when a later
// try meets a gateway that truly admits nothing; and the retry with the same client
// message id returns the message that was admitted.
func TestSendThatLostItsAnswerIsOutcomeUnknown(t *testing.T) {
	t.Parallel()
	g := startGateway(t)
	r := relay.Start(t, g.addr)
	conn, err := grpc.NewClient(r.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	id, key := g.newBusiness(high)
	signer, err := e2e.GenerateSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	b := client.NewBusiness(conn, id, key, signer, client.WithRetry(1, 0))
	ctx := t.Context()
	if err := b.RegisterSigningKey(ctx); err != nil {
		t.Fatal(err)
	}
	phone := g.device(nil, alice, e2e.X25519)
	// next is the device's next message, acknowledged.
	next := func() *client.Message {
		t.Helper()
		m := receiveMessages(t, phone, 1)[0]
		if err := phone.Ack(ctx, m.ID); err != nil {
			t.Fatal(err)
		}
		return m
	}
	if _, err := b.Send(ctx, alice, e2e.Transactional, e2e.Receipt, []byte("warm")); err != nil {
		t.Fatal(err)
	}
	next()

	// The answer to a Send is lost, and then the connection: the device has the
	// message all the same. meanwhile runs before the connection breaks, while the
	// Send waits.
	lose := func(b *client.Business, id string, meanwhile func()) (*client.Message, error) {
		t.Helper()
		r.Hold()
		errc := make(chan error, 1)
		go func() {
			_, err := b.Send(ctx, alice, e2e.Transactional, e2e.Receipt, []byte(id), client.WithClientMessageID(id))
			errc <- err
		}()
		m := next()
		if m.ClientMessageID != id {
			t.Fatalf("the device got %s, want %s", m.ClientMessageID, id)
		}
		meanwhile()
		r.Cut()
		return m, answer(t, errc)
	}
	m, err := lose(b, "lost", func() {})
	var un *client.UnavailableError
	if !errors.As(err, &un) || !un.OutcomeUnknown {
		t.Fatalf("Send whose answer was lost: %v; want an *UnavailableError with OutcomeUnknown", err)
	}
	again, err := client.NewBusiness(g.conn, id, key, signer).Send(ctx, alice, e2e.Transactional, e2e.Receipt,
		[]byte("lost"), client.WithClientMessageID("lost"))
	if err != nil || !again.Duplicate || again.MessageID != m.ID {
		t.Fatalf("the retry: %+v, %v; want the duplicate of %s", again, err, m.ID)
	}

	// A retry that a gateway answers with "nothing was admitted" speaks for itself
	// only: the first try may have admitted the message. Here the retry meets a
	// restarted gateway (nothing cached) whose store is down, which can check no API
	// key and says so.
	patient := client.NewBusiness(conn, id, key, signer, client.WithRetry(2, 10*time.Millisecond))
	if _, err := patient.Send(ctx, alice, e2e.Transactional, e2e.Receipt, []byte("warm")); err != nil {
		t.Fatal(err) // looks alice up while the answers come
	}
	next()
	_, err = lose(patient, "lost-2", func() {
		g.restart()
		g.rs.Stop()
	})
	if !errors.As(err, &un) || !un.OutcomeUnknown {
		t.Fatalf("Send whose first answer was lost and whose retry admitted nothing: %v; want OutcomeUnknown", err)
	}
}

// answer waits for what a Send started in the background returns.
func answer(t *testing.T, errc <-chan error) error {
	t.Helper()
	select {
	case err := <-errc:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("the Send did not return")
		return nil
	}
}
