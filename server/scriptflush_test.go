package server

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
)

// TestScriptFlushUnderTraffic: Redis forgets its scripts (SCRIPT FLUSH, as after a
// restart or a failover) over and over while a business sends, looks recipients up,
// and devices receive and acknowledge. No call fails; every message is accepted,
// delivered once to its device with its body, acknowledged, and reported DELIVERED to
// the business.
func TestScriptFlushUnderTraffic(t *testing.T) {
	t.Parallel()
	g := startGateway(t)
	_, key := g.newBusiness("Acme")
	numbers := []string{"+14155550101", "+14155550102", "+14155550103", "+14155550104"}
	devs := make([]device, len(numbers))
	for i, n := range numbers {
		devs[i] = g.register(n)
	}
	statuses := g.statuses(key, "")
	const perRecipient = 24

	stop := make(chan struct{})
	var flushes atomic.Int64
	flusherDone := make(chan struct{})
	go func() {
		defer close(flusherDone)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if err := g.rdb.ScriptFlush(context.Background()).Err(); err != nil {
				t.Errorf("SCRIPT FLUSH: %v", err)
				return
			}
			flushes.Add(1)
		}
	}()

	var (
		wg        sync.WaitGroup
		mu        sync.Mutex
		accepted  = map[string]string{} // message id -> body
		delivered = map[string]string{}
	)
	for i, n := range numbers {
		dev := devs[i]
		rc := g.receive(dev)
		wg.Add(2)
		go func() { // the business
			defer wg.Done()
			for j := range perRecipient {
				m := msg(n, tx, rcpt, fmt.Sprintf("m-%d-%d", i, j), "hello", dev)
				if j%2 == 0 {
					m.Body = fmt.Appendf(nil, "body %d-%d", i, j)
				}
				var r *heraldv1.Result
				if j%3 == 0 {
					resp, err := g.messaging.SendBatch(as(key), &heraldv1.SendBatchRequest{Messages: []*heraldv1.Message{m}})
					if err != nil {
						t.Errorf("SendBatch: %v", err)
						return
					}
					r = resp.Results[0]
				} else {
					resp, err := g.messaging.Send(as(key), &heraldv1.SendRequest{Message: m})
					if err != nil {
						t.Errorf("Send: %v", err)
						return
					}
					r = resp.Result
				}
				if r.Outcome != heraldv1.Outcome_OUTCOME_ACCEPTED {
					t.Errorf("message %s: %v", m.ClientMessageId, r)
					return
				}
				mu.Lock()
				accepted[r.MessageId] = string(m.Body)
				mu.Unlock()
				if j%4 == 0 {
					look, err := g.messaging.LookupRecipient(as(key), &heraldv1.LookupRecipientRequest{Recipient: n, Category: tx})
					if err != nil || look.Outcome != heraldv1.Outcome_OUTCOME_ACCEPTED || len(look.Devices) != 1 {
						t.Errorf("LookupRecipient = %v, %v", look, err)
						return
					}
				}
			}
		}()
		go func() { // the device
			defer wg.Done()
			for got := 0; got < perRecipient; got++ {
				var d *heraldv1.Delivery
				select {
				case d = <-rc.ch:
				case <-time.After(30 * time.Second): // bounds a hang only
				}
				if d == nil {
					var err error
					select {
					case err = <-rc.errc:
					default:
					}
					t.Errorf("device %s: stream ended or stalled after %d deliveries: %v", dev.id, got, err)
					return
				}
				mu.Lock()
				_, twice := delivered[d.MessageId]
				delivered[d.MessageId] = string(d.Body)
				mu.Unlock()
				if twice {
					t.Errorf("%s delivered twice on one stream", d.MessageId)
				}
				_, err := g.recipient.Ack(as(dev.token), &heraldv1.AckRequest{MessageIds: []string{d.MessageId}, Read: got%2 == 1})
				if err != nil {
					t.Errorf("Ack: %v", err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	<-flusherDone
	if t.Failed() {
		return
	}
	if flushes.Load() == 0 {
		t.Fatal("no SCRIPT FLUSH ran during the traffic; the test proved nothing")
	}
	if len(accepted) != len(numbers)*perRecipient {
		t.Fatalf("%d messages accepted, want %d", len(accepted), len(numbers)*perRecipient)
	}
	for id, body := range accepted {
		if got, ok := delivered[id]; !ok || got != body {
			t.Fatalf("message %s: delivered %v with body %q, want body %q", id, ok, got, body)
		}
	}

	// Every ack was recorded: the business hears DELIVERED for each message.
	waiting := map[string]bool{}
	for id := range accepted {
		waiting[id] = true
	}
	deadline := time.After(30 * time.Second) // bounds a hang only
	for len(waiting) > 0 {
		select {
		case e, ok := <-statuses.ch:
			if !ok {
				t.Fatal("status stream ended")
			}
			if e.Status == heraldv1.Status_STATUS_DELIVERED {
				delete(waiting, e.MessageId)
			}
		case <-deadline:
			t.Fatalf("%d messages never reported DELIVERED", len(waiting))
		}
	}
	t.Logf("%d messages through %d script flushes", len(accepted), flushes.Load())
}
