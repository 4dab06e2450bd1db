package server

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldhq/herald/delivery"
	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
)

// TestBlockStopsLaterAdmissions blocks a business while eight senders on another
// gateway hammer the recipient, and checks that no Send that started after Block
// returned was admitted or delivered, and that everything admitted before was.
func TestBlockStopsLaterAdmissions(t *testing.T) {
	a := startGateway(t)
	b := startGatewayOn(t, a.redis)
	biz, key := a.newBusiness("Acme")
	phone := a.register(alice)

	type sent struct {
		started int64 // position of the Send's start relative to the block
		result  *heraldv1.Result
	}
	var (
		mu       sync.Mutex
		results  []sent
		blocked  atomic.Bool // set once Block has returned
		stop     atomic.Bool
		wg       sync.WaitGroup
		accepted atomic.Int64
	)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; !stop.Load(); i++ {
				after := int64(0)
				if blocked.Load() {
					after = 1
				}
				r, err := b.messaging.Send(as(key), &heraldv1.SendRequest{Message: msg(alice, tx, rcpt,
					fmt.Sprintf("w%d-%d", w, i), "hi", phone)})
				if err != nil {
					t.Error(err)
					return
				}
				if r.Result.Outcome == heraldv1.Outcome_OUTCOME_ACCEPTED {
					accepted.Add(1)
				}
				mu.Lock()
				results = append(results, sent{after, r.Result})
				mu.Unlock()
			}
		}()
	}
	for accepted.Load() < 50 {
		time.Sleep(5 * time.Millisecond)
	}
	if _, err := a.recipient.Block(as(phone.token), &heraldv1.BlockRequest{BusinessId: biz}); err != nil {
		t.Fatal(err)
	}
	blocked.Store(true)
	time.Sleep(300 * time.Millisecond)
	stop.Store(true)
	wg.Wait()

	admitted := map[string]bool{}
	var afterBlock int
	for _, s := range results {
		if s.started == 1 {
			afterBlock++
			if s.result.Outcome != heraldv1.Outcome_OUTCOME_BLOCKED {
				t.Fatalf("a Send started after Block returned got %v", s.result)
			}
		}
		if s.result.Outcome == heraldv1.Outcome_OUTCOME_ACCEPTED {
			admitted[s.result.MessageId] = true
		}
	}
	if afterBlock == 0 {
		t.Fatal("no Send ran after the block; the test proved nothing")
	}
	t.Logf("%d sends, %d admitted before the block, %d refused after it", len(results), len(admitted), afterBlock)

	// The device receives exactly the admitted messages.
	rc := a.receive(phone)
	for range len(admitted) {
		d := rc.next()
		if !admitted[d.MessageId] {
			t.Fatalf("delivered %s, which was never admitted", d.MessageId)
		}
		delete(admitted, d.MessageId)
	}
	rc.none(300 * time.Millisecond)
}

// TestDeviceOnAnotherGatewayIsWoken checks that an admission on one gateway wakes a
// Receive held by another through Redis pub/sub, not by polling.
func TestDeviceOnAnotherGatewayIsWoken(t *testing.T) {
	old := delivery.PollInterval
	delivery.PollInterval = time.Hour
	t.Cleanup(func() { delivery.PollInterval = old })

	a := startGateway(t)
	b := startGatewayOn(t, a.redis)
	_, key := a.newBusiness("Acme")
	phone := a.register(alice)
	rc := a.receive(phone)
	rc.none(200 * time.Millisecond) // the stream is open and waiting
	for i := range 3 {
		r := b.send(key, msg(alice, tx, rcpt, fmt.Sprint("x", i), "hi", phone))
		if d := rc.next(); d.MessageId != r.MessageId {
			t.Fatalf("got %s, want %s", d.MessageId, r.MessageId)
		}
	}
}
