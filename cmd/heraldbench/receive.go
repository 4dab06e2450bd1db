package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	"google.golang.org/grpc"
)

// acking is when receivers acknowledge what they receive.
type acking int

const (
	// ackEach acknowledges every delivery as it comes, with an Ack call of its own, as
	// a phone would.
	ackEach acking = iota
	// ackAfter holds every delivery until ackHeld, which acknowledges them in as few
	// calls as it can: for a measure of delivery alone.
	ackAfter
)

// receivers are devices with a Receive stream open each.
type receivers struct {
	acking    acking
	cancel    context.CancelFunc
	closeOnce sync.Once
	// streams are the goroutines reading the streams, and acks those acknowledging
	// what they read, one a stream.
	streams, acks    sync.WaitGroup
	delivered, acked atomic.Int64
	// devices are the streams' devices.
	devices []streamDevice

	mu sync.Mutex
	// latencies are the deliveries' latencies from their turns to be sent.
	latencies []time.Duration
	// last is when the last delivery came.
	last time.Time
	err  error
}

// streamDevice is the device of one stream.
type streamDevice struct {
	client heraldv1.RecipientServiceClient
	token  string
	// held is what it received, acking after, for ackHeld.
	held []string
}

// maxAckIDs is how many ids the gateway takes in one Ack call.
const maxAckIDs = 1000

// openReceivers opens a Receive stream for each device, spread over conns, and waits
// until heraldd counts them all open.
func (b *bench) openReceivers(ctx context.Context, devs []recipient, conns []*grpc.ClientConn, acking acking) (*receivers, error) {
	sctx, cancel := context.WithCancel(ctx)
	rs := &receivers{acking: acking, cancel: cancel, devices: make([]streamDevice, len(devs))}
	for i, d := range devs {
		client := heraldv1.NewRecipientServiceClient(conns[i%len(conns)])
		dctx := bearer(sctx, d.token)
		rs.devices[i] = streamDevice{client: client, token: d.token}
		st, err := client.Receive(dctx, &heraldv1.ReceiveRequest{})
		if err != nil {
			rs.close()
			return nil, fmt.Errorf("open a Receive stream: %w", err)
		}
		if acking == ackAfter {
			rs.streams.Go(func() { rs.read(dctx, st, func(id string) { rs.devices[i].held = append(rs.devices[i].held, id) }) })
			continue
		}
		acks := make(chan string, 1024)
		rs.streams.Go(func() {
			defer close(acks)
			rs.read(dctx, st, func(id string) { acks <- id })
		})
		// Not the stream's context: acks queued when the streams close still go.
		rs.acks.Go(func() { rs.ack(context.WithoutCancel(dctx), client, acks) })
	}
	if err := b.waitStreams(ctx, func(n float64) bool { return n >= float64(len(devs)) }); err != nil {
		rs.close()
		return nil, err
	}
	return rs, rs.failed()
}

// read reads one stream until it ends, and passes each delivery's id on.
func (rs *receivers) read(ctx context.Context, st grpc.ServerStreamingClient[heraldv1.ReceiveResponse], received func(id string)) {
	for {
		m, err := st.Recv()
		if err != nil {
			if ctx.Err() == nil && !errors.Is(err, io.EOF) {
				rs.fail(fmt.Errorf("a Receive stream ended: %w", err))
			}
			return
		}
		d := m.GetDelivery()
		if d == nil {
			continue
		}
		now := time.Now()
		turn, err := turnOf(d.GetClientMessageId())
		if err != nil {
			rs.fail(err)
			continue
		}
		rs.mu.Lock()
		rs.latencies = append(rs.latencies, now.Sub(turn))
		rs.last = now
		rs.mu.Unlock()
		rs.delivered.Add(1)
		received(d.GetMessageId())
	}
}

// ack acknowledges the deliveries of one device, each with an Ack call of its own.
func (rs *receivers) ack(ctx context.Context, client heraldv1.RecipientServiceClient, ids <-chan string) {
	for id := range ids {
		actx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := client.Ack(actx, &heraldv1.AckRequest{MessageIds: []string{id}})
		cancel()
		if err != nil {
			rs.fail(fmt.Errorf("ack: %w", err))
			continue
		}
		rs.acked.Add(1)
	}
}

// drain waits until n deliveries came (and, acking each, were acknowledged), or
// timeout passes; it says how many did not come.
func (rs *receivers) drain(ctx context.Context, n int64, timeout time.Duration) (int64, error) {
	done := &rs.acked
	if rs.acking == ackAfter {
		done = &rs.delivered
	}
	deadline := time.Now().Add(timeout)
	for done.Load() < n && time.Now().Before(deadline) {
		if err := rs.failed(); err != nil {
			return 0, err
		}
		if err := sleep(ctx, 10*time.Millisecond); err != nil {
			return 0, err
		}
	}
	return max(n-rs.delivered.Load(), 0), rs.failed()
}

// ackHeld acknowledges what the devices held, up to 1,000 ids a call, once the streams
// are closed.
func (rs *receivers) ackHeld(ctx context.Context) error {
	rs.close()
	for _, d := range rs.devices {
		for ids := range slices.Chunk(d.held, maxAckIDs) {
			if _, err := d.client.Ack(bearer(ctx, d.token), &heraldv1.AckRequest{MessageIds: ids}); err != nil {
				return fmt.Errorf("ack: %w", err)
			}
		}
	}
	return nil
}

// lastDelivery is when the last delivery came.
func (rs *receivers) lastDelivery() time.Time {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return rs.last
}

// close ends the streams; again, it does nothing.
func (rs *receivers) close() {
	rs.closeOnce.Do(func() {
		rs.cancel()
		rs.streams.Wait()
		rs.acks.Wait()
	})
}

// sortedLatencies are the deliveries' latencies, sorted.
func (rs *receivers) sortedLatencies() []time.Duration {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	slices.Sort(rs.latencies)
	return rs.latencies
}

func (rs *receivers) fail(err error) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if rs.err == nil {
		rs.err = err
	}
}

func (rs *receivers) failed() error {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return rs.err
}

// waitStreams waits until heraldd's count of open Receive streams satisfies ok.
func (b *bench) waitStreams(ctx context.Context, ok func(float64) bool) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		mf, err := scrape(ctx, b.metricsURL)
		if err != nil {
			return err
		}
		n := receiveStreams(mf)
		if ok(n) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("heraldd has %v Receive streams open after 30 s", n)
		}
		if err := sleep(ctx, 20*time.Millisecond); err != nil {
			return err
		}
	}
}

// clientID is a client message id that carries the message's turn to be sent, so
// that a delivery's latency is measured from it: unique per round, scenario and
// sequence.
func clientID(prefix string, seq int64, turn time.Time) string {
	return prefix + "." + strconv.FormatInt(seq, 10) + "." + strconv.FormatInt(turn.UnixNano(), 10)
}

// turnOf is the turn clientID put in id.
func turnOf(id string) (time.Time, error) {
	i := strings.LastIndexByte(id, '.')
	ns, err := strconv.ParseInt(id[i+1:], 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("a delivery heraldbench did not send: client message id %q", id)
	}
	return time.Unix(0, ns), nil
}
