// Package delivery is everything between an admitted message and a person's device:
// device registration and tokens, per-device mailboxes, the Receive stream woken by
// Redis pub/sub, acknowledgements, expiry, and the status events businesses read.
//
// Guarantees:
//   - A message admitted for a device stays in its mailbox until the device acks it or
//     it expires; every Receive sends what is queued, so delivery is at least once. A
//     message that cannot be delivered (its sealed body is gone) is reported expired
//     on the device rather than holding up the rest.
//   - Each state change of a message on a device (queued, delivered, read, expired)
//     happens once, atomically with the status event that reports it; each status
//     event reaches the business once (a repeated copy within forwardDedupe is
//     dropped), in a stream it can resume by cursor.
//   - One pub/sub connection per gateway, whatever the number of connected devices.
//
// A gateway builds one Service with New, runs its background work (forwarding status
// events, sweeping expired messages) with Run, and closes it with Close.
package delivery

import (
	"context"
	"sync"

	"github.com/redis/go-redis/v9"
)

// Service is the delivery side of one gateway. Its parts share one pub/sub connection
// (the hub) and one forwarder of status events, which is why they are built together:
// build one Service per gateway with New, run its background work with Run, and Close
// it after Run has returned.
type Service struct {
	devices   *Devices
	mailboxes *Mailboxes
	statuses  *Statuses
	forwarder *Forwarder
	expiries  *Expiries
	waker     *Waker
	hub       *hub
}

// New returns a Service on rdb. It opens the Service's pub/sub connection at once;
// nothing else runs until Run.
func New(rdb redis.UniversalClient, opts ...Option) *Service {
	c := defaults()
	for _, o := range opts {
		o(&c)
	}
	if c.secret == nil {
		c.secret = random(32)
	}
	h := newHub(rdb, c.log)
	f := newForwarder(rdb, c.log, c.now, c.qualityBucket, c.outboxSweep)
	f.indexSize = c.metrics.OutboxIndex
	e := newExpiries(rdb, f, c.now, c.log, c.expirySweep, c.receiptWindow)
	m := newMailboxes(rdb, h, f, e, c.now, c.pollInterval, c.receiptWindow)
	m.depth = c.metrics.Mailbox
	m.live = len(c.pushers) > 0
	return &Service{
		devices:   newDevices(rdb, e, c),
		mailboxes: m,
		statuses:  newStatuses(rdb, h, c.pollInterval),
		forwarder: f,
		expiries:  e,
		waker:     newWaker(rdb, c.log, c.wakeInterval, c.pushers),
		hub:       h,
	}
}

// Devices registers devices and authenticates their tokens.
func (s *Service) Devices() *Devices { return s.devices }

// Mailboxes streams deliveries to devices and records their acks and reports.
func (s *Service) Mailboxes() *Mailboxes { return s.mailboxes }

// Statuses streams businesses' status events.
func (s *Service) Statuses() *Statuses { return s.statuses }

// Forwarder moves status events to businesses' streams; kick it after a change that
// queued one outside this package (an admission).
func (s *Service) Forwarder() *Forwarder { return s.forwarder }

// Expiries indexes admitted messages by expiry, for the sweep that reports them.
func (s *Service) Expiries() *Expiries { return s.expiries }

// Waker wakes devices through their push services; tell it of each admission.
func (s *Service) Waker() *Waker { return s.waker }

// Run forwards status events and sweeps expired messages until ctx ends. It then makes
// a last bounded attempt to forward and index what is pending, so a graceful shutdown
// leaves nothing behind that it could send, and returns when that is done.
func (s *Service) Run(ctx context.Context) {
	forwarding, stop := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	wg.Go(func() { s.forwarder.run(forwarding) })
	wg.Go(func() { s.waker.run(ctx) })
	s.expiries.run(ctx)
	// The forwarder stops after the sweep has, so that its last drain sees every event
	// the sweep queued.
	stop()
	wg.Wait()
}

// Close releases the pub/sub connection. Call it once Run has returned and the streams
// have ended.
func (s *Service) Close() error { return s.hub.Close() }
