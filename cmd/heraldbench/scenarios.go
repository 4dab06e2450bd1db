package main

import (
	"context"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	"google.golang.org/grpc"
)

// The load's shape, as the performance goals are stated.
const (
	// callers call Send, and the unary baselines, at once over conns connections.
	callers = 64
	conns   = 4
	// batchCallers call SendBatch at once, each with batchSize messages.
	batchCallers = 16
	batchSize    = 100
	// pipelineCallers drive the pipelined baseline, each pipelineDepth scripts to a
	// round trip.
	pipelineCallers = 16
	pipelineDepth   = 16
	// fanoutConns carry the broadcast's Receive streams: a handful, each with many.
	fanoutConns = 8
)

// result is one scenario's figures in one round; a figure that does not apply to the
// scenario is 0. CPU is in microseconds per message, latencies in milliseconds.
type result struct {
	Messages   int64   `json:"messages"`
	MsgsPerSec float64 `json:"msgs_per_sec"`
	// P50Ms and P99Ms are the latencies of calls (of pipelines, for P16); for a paced
	// load, from each call's turn to be sent.
	P50Ms float64 `json:"p50_ms"`
	P99Ms float64 `json:"p99_ms"`
	// RedisCPUUs is Redis's CPU per message (INFO used_cpu_user + used_cpu_sys).
	RedisCPUUs float64 `json:"redis_cpu_us_per_msg"`
	// ServerCPUUs is the server's CPU per message (/proc/PID/stat utime + stime):
	// heraldd's, the baseline server's, or heraldbench's own for P16.
	ServerCPUUs float64 `json:"server_cpu_us_per_msg"`
	// ClientCPUUs is heraldbench's own CPU per message: the load's cost, which shares
	// the machine.
	ClientCPUUs float64 `json:"client_cpu_us_per_msg"`
	// RoundTrips is heraldd's Redis round trips per message.
	RoundTrips float64 `json:"round_trips_per_msg,omitempty"`

	// For the delivery scenarios, where a message is a delivered one.
	//
	// DeliveryP50Ms and DeliveryP99Ms are from a message's turn to be sent to its
	// Delivery's arrival at the device.
	DeliveryP50Ms float64 `json:"delivery_p50_ms,omitempty"`
	DeliveryP99Ms float64 `json:"delivery_p99_ms,omitempty"`
	// Undelivered is how many admitted messages had not arrived when heraldbench
	// stopped waiting.
	Undelivered int64 `json:"undelivered,omitempty"`
	// The Net figures are the delivery's own: the total less what admitting the
	// messages costs, measured by sending at the same rate to devices without a stream.
	NetRoundTrips  float64 `json:"net_round_trips_per_msg,omitempty"`
	NetServerCPUUs float64 `json:"net_server_cpu_us_per_msg,omitempty"`
	NetRedisCPUUs  float64 `json:"net_redis_cpu_us_per_msg,omitempty"`
	// The Admission figures are that reference, per Send.
	AdmissionRoundTrips  float64 `json:"admission_round_trips_per_send,omitempty"`
	AdmissionServerCPUUs float64 `json:"admission_server_cpu_us_per_send,omitempty"`
	AdmissionRedisCPUUs  float64 `json:"admission_redis_cpu_us_per_send,omitempty"`
}

// scenario is one thing heraldbench measures, once a round.
type scenario struct {
	// name keys it in the JSON output.
	name string
	run  func(b *bench, ctx context.Context, round int) (result, error)
}

// scenarios run in this order in every round, so that each round sees every
// scenario under the machine's conditions of the moment.
var scenarios = []scenario{
	{"empty_unary", (*bench).emptyUnary},
	{"script_unary", (*bench).scriptUnary},
	{"send", (*bench).send},
	{"pipelined_p16", (*bench).pipelined},
	{"send_batch", (*bench).sendBatch},
	{"steady_delivery", (*bench).steadyDelivery},
	{"broadcast", (*bench).broadcast},
}

// loadFigures are the figures of a load every message of which was measured alike.
func loadFigures(lr loadResult) result {
	w := lr.counters
	r := result{Messages: lr.messages, MsgsPerSec: float64(lr.messages) / lr.window.Seconds(),
		P50Ms: ms(quantile(lr.latencies, 0.50)), P99Ms: ms(quantile(lr.latencies, 0.99)),
		RedisCPUUs: perMessage(w.redisCPU, lr.all), ServerCPUUs: perMessage(w.serverCPU, lr.all),
		ClientCPUUs: perMessage(w.clientCPU, lr.all)}
	if lr.all > 0 {
		r.RoundTrips = w.roundTrips / float64(lr.all)
	}
	return r
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// id is a client message id unique to a round, a scenario (tag) and a sequence number.
func id(tag string, round int, seq int64) string {
	return tag + strconv.Itoa(round) + "." + strconv.FormatInt(seq, 10)
}

func (b *bench) emptyUnary(ctx context.Context, round int) (result, error) {
	return b.unary(ctx, round, emptyMethod, "e")
}

func (b *bench) scriptUnary(ctx context.Context, round int) (result, error) {
	return b.unary(ctx, round, scriptMethod, "u")
}

// unary calls a baseline method with the request Herald's Send gets.
func (b *bench) unary(ctx context.Context, round int, method, tag string) (result, error) {
	lr, err := b.closedLoop(ctx, b.baselineServer(), callers, b.cfg.duration, func(ctx context.Context, c int, seq int64) (int, error) {
		req := &heraldv1.SendRequest{Message: message(b.sendTo[seq%int64(len(b.sendTo))], id(tag, round, seq))}
		var resp heraldv1.SendResponse
		if err := b.base[c%len(b.base)].Invoke(ctx, method, req, &resp); err != nil {
			return 0, fmt.Errorf("%s: %w", method, err)
		}
		return 1, accepted(resp.GetResult())
	})
	return loadFigures(lr), err
}

// send is Herald's Send, to one-device recipients taken round-robin.
func (b *bench) send(ctx context.Context, round int) (result, error) {
	clients := b.messaging(b.herald)
	lr, err := b.closedLoop(bearer(ctx, b.apiKey), b.heralddServer(), callers, b.cfg.duration, func(ctx context.Context, c int, seq int64) (int, error) {
		req := &heraldv1.SendRequest{Message: message(b.sendTo[seq%int64(len(b.sendTo))], id("s", round, seq))}
		resp, err := clients[c%len(clients)].Send(ctx, req)
		if err != nil {
			return 0, fmt.Errorf("calling Send: %w", err)
		}
		return 1, accepted(resp.GetResult())
	})
	return loadFigures(lr), err
}

// sendBatch is Herald's SendBatch, each call to batchSize recipients.
func (b *bench) sendBatch(ctx context.Context, round int) (result, error) {
	clients := b.messaging(b.herald)
	lr, err := b.closedLoop(bearer(ctx, b.apiKey), b.heralddServer(), batchCallers, b.cfg.duration, func(ctx context.Context, c int, seq int64) (int, error) {
		req := &heraldv1.SendBatchRequest{Messages: make([]*heraldv1.Message, batchSize)}
		for j := range batchSize {
			n := seq*batchSize + int64(j)
			req.Messages[j] = message(b.sendTo[n%int64(len(b.sendTo))], id("b", round, n))
		}
		resp, err := clients[c%len(clients)].SendBatch(ctx, req)
		if err != nil {
			return 0, fmt.Errorf("calling SendBatch: %w", err)
		}
		for _, r := range resp.GetResults() {
			if err := accepted(r); err != nil {
				return 0, err
			}
		}
		return batchSize, nil
	})
	return loadFigures(lr), err
}

// pipelined is the SendBatch ceiling: the small script, pipelineDepth to a round trip
// on go-redis, run by heraldbench itself, whose CPU stands for the server's.
func (b *bench) pipelined(ctx context.Context, round int) (result, error) {
	self := server{name: "heraldbench", pid: b.self}
	lr, err := b.closedLoop(ctx, self, pipelineCallers, b.cfg.duration, func(ctx context.Context, c int, seq int64) (int, error) {
		pipe := b.rdb.Pipeline()
		for j := range pipelineDepth {
			r := b.sendTo[(seq*pipelineDepth+int64(j))%int64(len(b.sendTo))]
			smallScript.EvalSha(ctx, pipe, scriptKeys(r.number), scriptArgs(r.device, r.ciphertext)...)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return 0, fmt.Errorf("the pipelined small script: %w", err)
		}
		return pipelineDepth, nil
	})
	return loadFigures(lr), err
}

// pacedSends sends one message a turn, at rate a second for dur, to devs in turn,
// each from its turn's time; it returns how many were admitted and the calls'
// latencies from their turns.
func (b *bench) pacedSends(ctx context.Context, devs []recipient, rate float64, dur time.Duration, tag string) (int64, []time.Duration, error) {
	clients := b.messaging(b.herald)
	var sent atomic.Int64
	lat, err := paced(bearer(ctx, b.apiKey), callers, rate, dur, func(ctx context.Context, k int64, turn time.Time) error {
		req := &heraldv1.SendRequest{Message: message(devs[k%int64(len(devs))], clientID(tag, k, turn))}
		resp, err := clients[k%int64(len(clients))].Send(ctx, req)
		if err != nil {
			return fmt.Errorf("calling Send: %w", err)
		}
		if err := accepted(resp.GetResult()); err != nil {
			return err
		}
		sent.Add(1)
		return nil
	})
	return sent.Load(), lat, err
}

// drainTimeout is how long heraldbench waits for what was admitted to be delivered.
func (b *bench) drainTimeout() time.Duration { return max(10*time.Second, b.cfg.duration) }

// deliveryFigures are the figures of a delivery scenario: w measured the phase in
// which rs received what was sent from start on, at least dur long.
func (b *bench) deliveryFigures(rs *receivers, w window, start time.Time, sendLatencies []time.Duration, undelivered int64) result {
	delivered := rs.delivered.Load()
	dlat := rs.sortedLatencies()
	r := result{Messages: delivered, P50Ms: ms(quantile(sendLatencies, 0.5)), P99Ms: ms(quantile(sendLatencies, 0.99)),
		RedisCPUUs: perMessage(w.redisCPU, delivered), ServerCPUUs: perMessage(w.serverCPU, delivered),
		ClientCPUUs: perMessage(w.clientCPU, delivered), DeliveryP50Ms: ms(quantile(dlat, 0.5)), DeliveryP99Ms: ms(quantile(dlat, 0.99)), Undelivered: undelivered}
	if delivered > 0 {
		// The rate achieved: what arrived, over the time from the first turn to the
		// last arrival, or the time the turns took if that was longer.
		r.MsgsPerSec = float64(delivered) / max(rs.lastDelivery().Sub(start), b.cfg.duration).Seconds()
		r.RoundTrips = w.roundTrips / float64(delivered)
	}
	return r
}

// steadyDelivery sends at a fixed rate to devices whose streams are open and which ack
// every delivery, and counts what delivering costs heraldd: the cost of the phase
// (from opening the streams until they closed and heraldd was quiet), less what the
// same Sends cost when no device listens, measured just before at the same rate (to
// as many of the send scenario's recipients, which never have a stream).
func (b *bench) steadyDelivery(ctx context.Context, round int) (result, error) {
	rate, dur := b.cfg.steadyRate, b.cfg.duration
	var refSent int64
	admission, err := b.measured(ctx, b.heralddServer(), func() error {
		var err error
		refSent, _, err = b.pacedSends(ctx, b.sendTo[:min(len(b.steadyTo), len(b.sendTo))], rate, dur/2, "a"+strconv.Itoa(round))
		return err
	})
	if err != nil {
		return result{}, err
	}
	var (
		rs          *receivers
		sent        int64
		lat         []time.Duration
		undelivered int64
		start       time.Time
	)
	w, err := b.measured(ctx, b.heralddServer(), func() error {
		var err error
		if rs, err = b.openReceivers(ctx, b.steadyTo, b.herald, ackEach); err != nil {
			return err
		}
		defer b.closeReceivers(ctx, rs)
		start = time.Now()
		if sent, lat, err = b.pacedSends(ctx, b.steadyTo, rate, dur, "d"+strconv.Itoa(round)); err != nil {
			return err
		}
		undelivered, err = rs.drain(ctx, sent, b.drainTimeout())
		return err
	})
	if err != nil {
		return result{}, err
	}
	r := b.deliveryFigures(rs, w, start, lat, undelivered)
	if delivered := r.Messages; delivered > 0 && refSent > 0 {
		share := float64(sent) / float64(refSent)
		r.NetRoundTrips = (w.roundTrips - share*admission.roundTrips) / float64(delivered)
		r.NetServerCPUUs = perMessage(w.serverCPU-time.Duration(share*float64(admission.serverCPU)), delivered)
		r.NetRedisCPUUs = perMessage(w.redisCPU-time.Duration(share*float64(admission.redisCPU)), delivered)
		r.AdmissionRoundTrips = admission.roundTrips / float64(refSent)
		r.AdmissionServerCPUUs = perMessage(admission.serverCPU, refSent)
		r.AdmissionRedisCPUUs = perMessage(admission.redisCPU, refSent)
	}
	return r, nil
}

// broadcast sends SendBatch calls paced to a total rate, spread over many devices with
// a stream open each, and measures how long each message takes from its turn to be
// sent to its arrival. Its CPU per message counts admission and delivery together:
// the devices acknowledge what they received only after the measure (steady delivery
// measures acks), so that no round leaves a backlog to the next.
func (b *bench) broadcast(ctx context.Context, round int) (result, error) {
	devs := b.broadcastTo
	clients := b.messaging(b.herald)
	tag := "c" + strconv.Itoa(round)
	var (
		rs          *receivers
		sent        atomic.Int64
		lat         []time.Duration
		undelivered int64
		start       time.Time
	)
	w, err := b.measured(ctx, b.heralddServer(), func() error {
		var err error
		if rs, err = b.openReceivers(ctx, devs, b.fanout, ackAfter); err != nil {
			return err
		}
		defer b.closeReceivers(ctx, rs)
		start = time.Now()
		lat, err = paced(bearer(ctx, b.apiKey), batchCallers, b.cfg.broadcastRate/batchSize, b.cfg.duration, func(ctx context.Context, k int64, turn time.Time) error {
			req := &heraldv1.SendBatchRequest{Messages: make([]*heraldv1.Message, batchSize)}
			for j := range batchSize {
				n := k*batchSize + int64(j)
				req.Messages[j] = message(devs[n%int64(len(devs))], clientID(tag, n, turn))
			}
			resp, err := clients[k%int64(len(clients))].SendBatch(ctx, req)
			if err != nil {
				return fmt.Errorf("calling SendBatch: %w", err)
			}
			for _, r := range resp.GetResults() {
				if err := accepted(r); err != nil {
					return err
				}
			}
			sent.Add(batchSize)
			return nil
		})
		if err != nil {
			return err
		}
		undelivered, err = rs.drain(ctx, sent.Load(), b.drainTimeout())
		return err
	})
	if err != nil {
		return result{}, err
	}
	if err := rs.ackHeld(ctx); err != nil {
		return result{}, err
	}
	return b.deliveryFigures(rs, w, start, lat, undelivered), nil
}

// closeReceivers closes the streams and waits until heraldd has let go of them, so
// that the next scenario starts without them.
func (b *bench) closeReceivers(ctx context.Context, rs *receivers) {
	rs.close()
	if err := b.waitStreams(ctx, func(n float64) bool { return n == 0 }); err != nil {
		b.say("%v", err)
	}
}

// messaging is a MessagingService client on each of conns.
func (b *bench) messaging(conns []*grpc.ClientConn) []heraldv1.MessagingServiceClient {
	out := make([]heraldv1.MessagingServiceClient, len(conns))
	for i, c := range conns {
		out[i] = heraldv1.NewMessagingServiceClient(c)
	}
	return out
}
