package client_test

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald/client"
	"github.com/heraldhq/herald/e2e"
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
	r := startRelay(t, g.addr)
	conn, err := grpc.NewClient(r.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
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
	// message all the same.
	lose := func(b *client.Business, id string) (*client.Message, error) {
		t.Helper()
		r.hold()
		errc := make(chan error, 1)
		go func() {
			_, err := b.Send(ctx, alice, e2e.Transactional, e2e.Receipt, []byte(id), client.WithClientMessageID(id))
			errc <- err
		}()
		m := next()
		if m.ClientMessageID != id {
			t.Fatalf("the device got %s, want %s", m.ClientMessageID, id)
		}
		return m, r.cut(errc)
	}
	m, err := lose(b, "lost")
	var un *client.UnavailableError
	if !errors.As(err, &un) || !un.OutcomeUnknown {
		t.Fatalf("Send whose answer was lost: %v; want an *UnavailableError with OutcomeUnknown", err)
	}
	again, err := client.NewBusiness(g.conn, id, key, signer).Send(ctx, alice, e2e.Transactional, e2e.Receipt, []byte("lost"), client.WithClientMessageID("lost"))
	if err != nil || !again.Duplicate || again.MessageID != m.ID {
		t.Fatalf("the retry: %+v, %v; want the duplicate of %s", again, err, m.ID)
	}

	// A retry that the gateway answers with "nothing was admitted" (its store is down)
	// speaks for itself only: the first try may have admitted the message.
	patient := client.NewBusiness(conn, id, key, signer, client.WithRetry(2, 10*time.Millisecond))
	if _, err := patient.Send(ctx, alice, e2e.Transactional, e2e.Receipt, []byte("warm")); err != nil {
		t.Fatal(err) // looks alice up while the answers come
	}
	next()
	r.hold()
	errc := make(chan error, 1)
	go func() {
		_, err := patient.Send(ctx, alice, e2e.Transactional, e2e.Receipt, []byte("lost-2"), client.WithClientMessageID("lost-2"))
		errc <- err
	}()
	if m := next(); m.ClientMessageID != "lost-2" {
		t.Fatalf("the device got %s, want lost-2", m.ClientMessageID)
	}
	g.rs.Stop()
	err = r.cut(errc)
	if !errors.As(err, &un) || !un.OutcomeUnknown {
		t.Fatalf("Send whose first answer was lost and whose retry admitted nothing: %v; want OutcomeUnknown", err)
	}
}

// relay is a TCP relay to a gateway that can lose the gateway's answers and then
// break the connection, as a gateway that dies mid-call does: what the client sent
// went through and was acted on, and no answer comes back.
type relay struct {
	addr string

	mu      sync.Mutex
	holding bool
	conns   []net.Conn
}

func startRelay(t testing.TB, target string) *relay {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &relay{addr: l.Addr().String()}
	t.Cleanup(func() {
		l.Close()
		r.cut(nil)
	})
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			r.mu.Lock()
			r.conns = append(r.conns, c, s)
			r.mu.Unlock()
			go func() {
				io.Copy(s, c)
				s.Close()
			}()
			go r.answer(c, s)
		}
	}()
	return r
}

// answer copies what the gateway writes to the client, dropping it while held.
func (r *relay) answer(c, s net.Conn) {
	defer c.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := s.Read(buf)
		r.mu.Lock()
		held := r.holding
		r.mu.Unlock()
		if n > 0 && !held {
			if _, err := c.Write(buf[:n]); err != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// hold drops the gateway's answers from now on, until cut.
func (r *relay) hold() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.holding = true
}

// cut breaks every connection through the relay (new ones pass again) and returns
// what errc then yields, if errc is not nil.
func (r *relay) cut(errc <-chan error) error {
	r.mu.Lock()
	for _, c := range r.conns {
		c.Close()
	}
	r.conns, r.holding = nil, false
	r.mu.Unlock()
	if errc == nil {
		return nil
	}
	select {
	case err := <-errc:
		return err
	case <-time.After(10 * time.Second):
		return context.DeadlineExceeded
	}
}
