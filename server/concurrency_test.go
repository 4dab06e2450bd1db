package server

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	"github.com/heraldhq/herald/internal/keys"
	"github.com/heraldhq/herald/internal/redistest"
	"github.com/redis/go-redis/v9"
)

// TestBlockStopsLaterAdmissions blocks a business while eight senders on another
// gateway hammer the recipient, and checks that no Send that started after Block
// returned was admitted or delivered, and that everything admitted before was.
func TestBlockStopsLaterAdmissions(t *testing.T) {
	t.Parallel()
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
		later    atomic.Int64 // Sends done that started after the block
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
				later.Add(after)
				mu.Lock()
				results = append(results, sent{after, r.Result})
				mu.Unlock()
			}
		}()
	}
	for accepted.Load() < 50 && !t.Failed() {
		time.Sleep(5 * time.Millisecond)
	}
	if _, err := a.recipient.Block(as(phone.token), &heraldv1.BlockRequest{BusinessId: biz}); err != nil {
		t.Fatal(err)
	}
	blocked.Store(true)
	// However slow the machine, Sends that started after the block must have run.
	for later.Load() < 20 && !t.Failed() {
		time.Sleep(5 * time.Millisecond)
	}
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
	t.Parallel()
	// Polling alone would take an hour: a delivery within the test is a notification.
	a := startGateway(t, func(c *Config) { c.PollInterval = time.Hour })
	b := startGatewayOn(t, a.redis)
	_, key := a.newBusiness("Acme")
	phone := a.register(alice)
	rc := a.receive(phone)
	// A notification published before the stream's gateway has subscribed reaches
	// nobody; only then is a delivery within the hour proof of one.
	waitSubscribed(t, a.rdb, keys.Recipient(a.srv.uid(alice)).Channel())
	for i := range 3 {
		r := b.send(key, msg(alice, tx, rcpt, fmt.Sprint("x", i), "hi", phone))
		if d := rc.next(); d.MessageId != r.MessageId {
			t.Fatalf("got %s, want %s", d.MessageId, r.MessageId)
		}
	}
}

// TestRedisConnectionsDoNotGrowWithDevices holds 200 Receive streams open on one
// gateway and counts Redis's clients: one pub/sub connection serves them all, and the
// pool stays within its size.
func TestRedisConnectionsDoNotGrowWithDevices(t *testing.T) {
	t.Parallel()
	if redistest.Memory() {
		t.Skip("counts redis-server's clients")
	}
	g := startGateway(t)
	_, key := g.newBusiness("Acme")
	const n = 200
	devs := make([]device, n)
	rcs := make([]*receiver, n)
	for i := range n {
		devs[i] = g.register(fmt.Sprintf("+1415557%04d", i))
		rcs[i] = g.receive(devs[i])
	}
	// Every stream is open and waiting: a message to the last one arrives.
	r := g.send(key, msg(fmt.Sprintf("+1415557%04d", n-1), tx, rcpt, "last", "x", devs[n-1]))
	if d := rcs[n-1].next(); d.MessageId != r.MessageId {
		t.Fatal("the last stream did not receive")
	}
	clients, err := g.rdb.ClientList(context.Background()).Result()
	if err != nil {
		t.Fatal(err)
	}
	count := strings.Count(clients, "\n")
	pool := 10 * runtime.GOMAXPROCS(0) // go-redis's default pool size
	t.Logf("%d Receive streams open; Redis has %d clients (pool size %d)", n, count, pool)
	if count > pool+3 {
		t.Fatalf("Redis has %d clients for %d devices: connections grow with devices", count, n)
	}
}

// waitSubscribed waits until a gateway has subscribed to channel.
func waitSubscribed(t *testing.T, rdb *redis.Client, channel string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; {
		n, err := rdb.PubSubNumSub(context.Background(), channel).Result()
		if err != nil {
			t.Fatal(err)
		}
		if n[channel] > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no gateway subscribed to %s within 10s", channel)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
