package server

import (
	"testing"
	"time"

	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	"github.com/heraldhq/herald/internal/redistest"
	"github.com/redis/go-redis/v9"
)

// TestOnRedisCluster runs the path of a message on a real three-master Redis
// Cluster: every script touches one slot (a recipient's, a business's or a body's),
// pipelines span nodes, and pub/sub wakes a device held by another gateway.
func TestOnRedisCluster(t *testing.T) {
	t.Parallel()
	c := redistest.StartCluster(t)
	newClient := func() redis.UniversalClient {
		return redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs, DialTimeout: time.Second,
			ReadTimeout: 2 * time.Second, WriteTimeout: 2 * time.Second})
	}
	a := startGatewayWith(t, newClient())
	b := startGatewayWith(t, newClient())
	biz, key := a.newBusiness("Acme")
	g1, g2 := a.register(alice), a.register(bob)
	events := a.statuses(key, "")
	r1, r2 := b.receive(g1), b.receive(g2)

	// A batch to two people (on different slots) with one shared body (a third slot).
	resp, err := a.messaging.SendBatch(as(key), &heraldv1.SendBatchRequest{Messages: []*heraldv1.Message{
		withBody(msg(alice, tx, rcpt, "c1", "one", g1)), withBody(msg(bob, tx, rcpt, "c1", "two", g2)),
	}})
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range resp.Results {
		if r.Outcome != heraldv1.Outcome_OUTCOME_ACCEPTED {
			t.Fatalf("result %d: %v", i, r)
		}
	}
	for i, rc := range []*receiver{r1, r2} {
		d := rc.next()
		if d.MessageId != resp.Results[i].MessageId || string(d.Body) != "shared body" {
			t.Fatalf("delivery %d = %v", i, d)
		}
	}
	if _, err := a.recipient.Ack(as(g1.token), &heraldv1.AckRequest{MessageIds: []string{resp.Results[0].MessageId}}); err != nil {
		t.Fatal(err)
	}
	events.waitFor(t, resp.Results[0].MessageId, heraldv1.Status_STATUS_DELIVERED, g1.id)

	if _, err := b.recipient.Block(as(g2.token), &heraldv1.BlockRequest{BusinessId: biz}); err != nil {
		t.Fatal(err)
	}
	if r := a.send(key, msg(bob, tx, rcpt, "c2", "x", g2)); r.Outcome != heraldv1.Outcome_OUTCOME_BLOCKED {
		t.Fatalf("after block: %v", r)
	}
	look, err := b.messaging.LookupRecipient(as(key), &heraldv1.LookupRecipientRequest{Recipient: alice, Category: tx})
	if err != nil || look.Outcome != heraldv1.Outcome_OUTCOME_ACCEPTED || len(look.Devices) != 1 {
		t.Fatalf("lookup = %v, %v", look, err)
	}
}

func withBody(m *heraldv1.Message) *heraldv1.Message {
	m.Body = []byte("shared body")
	return m
}
