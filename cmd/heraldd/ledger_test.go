package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldhq/herald/client"
	"github.com/heraldhq/herald/e2e"
	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	"github.com/heraldhq/herald/internal/keys"
	"github.com/heraldhq/herald/internal/redistest"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/status"
)

// TestLedgerUnderFaults keeps a ledger of what Herald promised, while its parts fail,
// and checks afterwards that every promise was kept (DESIGN.md, invariants 2, 5 and
// 6). Three heraldd processes run on one durable Redis (appendfsync always); a
// business sends through all three at once, nine devices of six people receive and
// answer through all three, and the business reads its status stream through one of
// them. Mid-load one gateway is killed (SIGKILL) and started again, Redis is shut down
// and started again with its data, then stalled (SIGSTOP) past the gateways' read
// timeout, and another gateway is killed and started again; every client rides that
// out by retrying and by moving to a gateway that is up. A Send that fails with
// "nothing was admitted" is dropped (and must never arrive); one whose outcome is
// unknown is sent again with its client message id until it is accepted.
//
// Then, once every answer has had time to arrive (polled, bounded):
//   - no loss: every message a Send accepted reached every device of its recipient,
//     which answered it as its role says (ack, read, or refuse);
//   - the business was told the truth exactly once: each status event (message,
//     device, status) arrived once, ACCEPTED once per message under the message id
//     the Send returned, DELIVERED (and READ) for what a device took, FAILED with the
//     reason, and never DELIVERED or READ, for what it refused;
//   - a Send that answered "nothing was admitted" admitted nothing, and one retried
//     after "outcome unknown" admitted its message once.
func TestLedgerUnderFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("runs for about a minute")
	}
	if redistest.Memory() {
		t.Skip("restarts Redis with its data, which only a real redis-server can do")
	}
	t.Parallel()
	const (
		load = 35 * time.Second // of sending, faults included
		// pace is each sender's pause between messages: six senders make 60 to 100
		// messages a second, which a shared 2-core machine carries with -race.
		pace    = 50 * time.Millisecond
		senders = 6
		people  = 6
		settle  = 30 * time.Second // the most the last answers may take to arrive
	)
	rs := redistest.StartDurable(t)
	gws := startReplicas(t, rs.URL, 3, "HERALD_LOG_LEVEL=error")
	ctx := t.Context()

	// A business with limits that never bind, and its signing key.
	admin := heraldv1.NewAdminServiceClient(gws[0].AdminConn)
	actx := bearer(replicaAdmin)
	cb, err := admin.CreateBusiness(actx, &heraldv1.CreateBusinessRequest{DisplayName: "Ledger"})
	if err != nil {
		t.Fatal(err)
	}
	biz := cb.BusinessId
	if _, err := admin.SetBusinessLimits(actx, &heraldv1.SetBusinessLimitsRequest{BusinessId: biz,
		MessagesPerSecond: 1e6, Burst: 1e6, UnlimitedUniqueRecipients: true}); err != nil {
		t.Fatal(err)
	}
	key, err := admin.IssueApiKey(actx, &heraldv1.IssueApiKeyRequest{BusinessId: biz})
	if err != nil {
		t.Fatal(err)
	}
	signer, err := e2e.GenerateSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	if err := client.NewBusiness(gws[0].Conn, biz, key.ApiKey, signer).RegisterSigningKey(ctx); err != nil {
		t.Fatal(err)
	}
	via := func(preferred int) failover {
		f := failover{gws[preferred].Conn}
		for i, g := range gws {
			if i != preferred {
				f = append(f, g.Conn)
			}
		}
		return f
	}

	// Six people, every other one with two devices: nine devices, device k at home on
	// gateway k%3, with a role such that each gateway serves every role and the two
	// devices of a person differ (one message can be taken on one and refused on the
	// other).
	numbers := make([]string, people)
	var devices []*handset
	devicesOf := make([][]*handset, people)
	for p := range people {
		numbers[p] = fmt.Sprintf("+1415555%04d", 300+p)
		for range 1 + p%2 {
			k := len(devices)
			code, err := admin.IssueVerificationCode(actx, &heraldv1.IssueVerificationCodeRequest{PhoneNumber: numbers[p]})
			if err != nil {
				t.Fatal(err)
			}
			alg := e2e.X25519
			if k == 0 {
				alg = e2e.MLKEM768X25519
			}
			d, err := client.Register(ctx, via(k%3), numbers[p], code.Code, alg, client.WithRetry(4, 50*time.Millisecond))
			if err != nil {
				t.Fatal(err)
			}
			// A person's second device waits for the first to approve it.
			if pending, _ := d.Pending(); pending != (len(devicesOf[p]) > 0) {
				t.Fatalf("device %d of person %d: pending = %v", len(devicesOf[p])+1, p, pending)
			} else if pending {
				if err := devicesOf[p][0].ApproveDevice(ctx, d.ID(), d.KeyID()); err != nil {
					t.Fatal(err)
				}
			}
			h := &handset{Device: d, person: p, role: []role{acks, refuses, reads}[(k+k/3)%3], answered: map[string]client.Status{},
				received: map[string]int{}, cids: map[string]string{}}
			devices = append(devices, h)
			devicesOf[p] = append(devicesOf[p], h)
		}
	}
	// The devices and the status reader run until the ledger is checked.
	listen, stopListening := context.WithCancel(ctx)
	var listeners sync.WaitGroup
	defer listeners.Wait()
	defer stopListening()
	for _, d := range devices {
		listeners.Go(func() { d.run(listen, t) })
	}
	reader := client.NewBusiness(via(1), biz, key.ApiKey, nil, client.WithRetry(4, 50*time.Millisecond))
	statuses := &statusLog{n: map[eventKey]int{}, reasons: map[eventKey]client.RejectReason{},
		clientIDs: map[string][]string{}}
	listeners.Go(func() { statuses.run(listen, t, reader) })

	// The load: senders spread over the gateways, each message to one person under a
	// client message id of its own.
	l := &ledger{accepted: map[string]admitted{}, notAdmitted: map[string]string{}, notAdmittedWhy: map[string]int{}}
	var senderGroup sync.WaitGroup
	defer senderGroup.Wait()
	sending, stopSending := context.WithCancel(ctx) // early, if the test fails
	defer stopSending()
	var next atomic.Int64
	start := time.Now()
	for s := range senders {
		b := client.NewBusiness(via(s%3), biz, key.ApiKey, signer, client.WithRetry(1, 0))
		senderGroup.Go(func() {
			for time.Since(start) < load && sending.Err() == nil {
				i := next.Add(1)
				cid := fmt.Sprintf("m%06d", i)
				p := int(i % people)
				l.send(sending, t, b, cid, p, numbers[p])
				time.Sleep(pace)
			}
		})
	}

	// The faults, while the load runs.
	var faults []string
	at := func(d time.Duration, what string, do func()) {
		time.Sleep(time.Until(start.Add(d)))
		do()
		faults = append(faults, fmt.Sprintf("%s at %.1fs", what, time.Since(start).Seconds()))
	}
	at(4*time.Second, "gateway 1 killed (SIGKILL)", gws[1].Kill)
	at(9*time.Second, "gateway 1 started again", gws[1].Start)
	at(13*time.Second, "Redis shut down (SIGTERM)", func() { rs.Shutdown(t) })
	at(16*time.Second, "Redis started again", func() { rs.Restart(t) })
	// Stalled past the gateways' read timeout and their one retry (2 s each), Redis
	// leaves them unable to tell whether the scripts they sent ran: Sends answer
	// "outcome unknown".
	at(19*time.Second, "Redis stalled (SIGSTOP)", func() { rs.Pause(t) })
	at(24*time.Second, "Redis resumed", func() { rs.Resume(t) })
	at(27*time.Second, "gateway 2 killed (SIGKILL)", gws[2].Kill)
	at(31*time.Second, "gateway 2 started again", gws[2].Start)
	senderGroup.Wait()
	loaded := time.Since(start)

	// Wait for every answer to arrive: each accepted message answered on each device
	// of its person, each of those answers (and each ACCEPTED) on the status stream,
	// and nothing left that could still produce an event: every outbox forwarded and
	// the status stream read to its end.
	l.mu.Lock()
	want := map[eventKey]bool{}
	for cid, a := range l.accepted {
		want[eventKey{a.id, "", client.StatusAccepted}] = true
		for _, d := range devicesOf[a.person] {
			for _, st := range d.role.events(cid) {
				want[eventKey{a.id, d.ID(), st}] = true
			}
		}
	}
	l.mu.Unlock()
	outboxes := make([]string, people)
	for p, n := range numbers {
		outboxes[p] = keys.Recipient(keys.UID([]byte(replicaSecret), n)).Outbox()
	}
	stream := keys.Business(biz).Statuses()
	quiet := func() (string, bool) {
		if n := statuses.missing(want); n > 0 {
			return fmt.Sprintf("%d of %d expected status events not arrived", n, len(want)), false
		}
		for _, o := range outboxes {
			if n, err := rs.Client.LLen(ctx, o).Result(); err != nil || n > 0 {
				return fmt.Sprintf("an outbox holds %d events (%v)", n, err), false
			}
		}
		last, err := rs.Client.XRevRangeN(ctx, stream, "+", "-", 1).Result()
		if err != nil || len(last) == 0 {
			return fmt.Sprintf("the status stream: %v", err), false
		}
		if cur := statuses.lastCursor(); cur != biz+"."+last[0].ID {
			return fmt.Sprintf("the status reader is at %s, the stream at %s", cur, last[0].ID), false
		}
		return "", true
	}
	waited := time.Now()
	for {
		why, ok := quiet()
		if ok {
			break
		}
		if time.Since(waited) > settle {
			t.Errorf("after %v: %s", settle, why)
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	settled := time.Since(waited)
	stopListening()
	listeners.Wait()

	// What the devices received and answered, against the ledger.
	var lost, wrongAnswer, notAdmittedArrived, twoAdmissions, dup, untrue, strays []string
	byMessage := map[string]string{} // the accepted messages' client message ids, by message id
	for cid, a := range l.accepted {
		byMessage[a.id] = cid
	}
	delivered, read, refused, sdkRefused := 0, 0, 0, 0
	for _, d := range devices {
		for id, n := range d.received {
			cid := d.cids[id]
			a, ok := l.accepted[cid]
			switch {
			case l.notAdmitted[cid] != "":
				notAdmittedArrived = append(notAdmittedArrived, fmt.Sprintf("%s reached device %s as %s; its Send said: %s",
					cid, d.ID(), id, l.notAdmitted[cid]))
			case !ok:
				strays = append(strays, fmt.Sprintf("device %s received %s as %q, which no Send accepted", d.ID(), id, cid))
			case a.id != id:
				twoAdmissions = append(twoAdmissions, fmt.Sprintf("%s: the Send returned %s, device %s received %s", cid, a.id, d.ID(), id))
			}
			if n > 1 {
				dup = append(dup, fmt.Sprintf("device %s received %s %d times", d.ID(), id, n))
			}
		}
		for _, st := range d.answered {
			switch st {
			case client.StatusDelivered:
				delivered++
			case client.StatusRead:
				delivered++
				read++
			case client.StatusFailed:
				refused++
			}
		}
		sdkRefused += len(d.refused)
		for _, err := range d.refused {
			untrue = append(untrue, fmt.Sprintf("device %s refused a delivery: %v", d.ID(), err))
		}
	}
	for cid, a := range l.accepted {
		for _, d := range devicesOf[a.person] {
			got, ok := d.answered[a.id]
			switch {
			case !ok:
				lost = append(lost, fmt.Sprintf("%s (%s) never reached device %s", cid, a.id, d.ID()))
			case got != d.role.verdict(cid):
				wrongAnswer = append(wrongAnswer, fmt.Sprintf("%s on %s: answered %v, want %v", cid, d.ID(), got, d.role.verdict(cid)))
			}
		}
	}
	// The status stream against the ledger.
	byStatus := map[client.Status]int{}
	for k, n := range statuses.n {
		byStatus[k.status] += n
		if n > 1 {
			dup = append(dup, fmt.Sprintf("%v of %s on %q came %d times", k.status, k.message, k.device, n))
		}
		if !want[k] {
			untrue = append(untrue, fmt.Sprintf("unexpected %v of %s (%s) on %q", k.status, k.message, byMessage[k.message], k.device))
		}
	}
	for k := range want {
		if statuses.n[k] == 0 {
			lost = append(lost, fmt.Sprintf("%v of %s (%s) on %q never reached the business", k.status, k.message, byMessage[k.message], k.device))
		}
		if k.status == client.StatusFailed && statuses.n[k] > 0 && statuses.reasons[k] != client.RejectBadSignature {
			untrue = append(untrue, fmt.Sprintf("FAILED of %s on %s carries reason %v, want %v", k.message, k.device,
				statuses.reasons[k], client.RejectBadSignature))
		}
	}
	for id, cids := range statuses.clientIDs {
		for _, cid := range cids {
			a, ok := l.accepted[cid]
			switch {
			case l.notAdmitted[cid] != "":
				notAdmittedArrived = append(notAdmittedArrived, fmt.Sprintf("ACCEPTED of %s (%s); its Send said: %s",
					cid, id, l.notAdmitted[cid]))
			case ok && a.id != id:
				twoAdmissions = append(twoAdmissions, fmt.Sprintf("%s: the Send returned %s, the business was told ACCEPTED of %s", cid, a.id, id))
			}
		}
	}
	if n, err := rs.Client.XLen(ctx, stream).Result(); err != nil || n != int64(statuses.total) {
		untrue = append(untrue, fmt.Sprintf("the status stream holds %d events (%v); the reader got %d", n, err, statuses.total))
	}

	t.Logf("%v of sending (%d messages tried) under faults: %s", loaded.Round(100*time.Millisecond), next.Load(), strings.Join(faults, ", "))
	t.Logf("sends: %d accepted, %d said nothing was admitted (not sent again; by call and reason: %v), "+
		"%d retried after outcome unknown, %d retries and %d first tries answered as a duplicate of an earlier admission",
		len(l.accepted), len(l.notAdmitted), l.notAdmittedWhy, l.unknown, l.duplicates, l.firstDuplicates)
	t.Logf("devices: %d deliveries (%d read), %d refused on purpose, %d refused by the SDK; %d answers retried",
		delivered, read, refused, sdkRefused, answerRetries(devices))
	t.Logf("status events: %d (%d accepted, %d delivered, %d read, %d failed, %d expired); all arrived %v after the load",
		statuses.total, byStatus[client.StatusAccepted], byStatus[client.StatusDelivered], byStatus[client.StatusRead],
		byStatus[client.StatusFailed], byStatus[client.StatusExpired], settled.Round(100*time.Millisecond))
	t.Logf("violations: %d lost, %d duplicates, %d untrue, %d wrong answers, %d admitted after \"nothing was admitted\", "+
		"%d admitted twice, %d strays",
		len(lost), len(dup), len(untrue), len(wrongAnswer), len(notAdmittedArrived), len(twoAdmissions), len(strays))
	report := func(what string, vs []string) {
		if len(vs) > 0 {
			slices.Sort(vs)
			t.Errorf("%s (%d), e.g.:\n  %s", what, len(vs), strings.Join(vs[:min(len(vs), 10)], "\n  "))
		}
	}
	report("lost", lost)
	report("duplicates", dup)
	report("untrue", untrue)
	report("answered otherwise than the device's role says", wrongAnswer)
	report("a Send said nothing was admitted, yet it was", notAdmittedArrived)
	report("one client message id admitted twice", twoAdmissions)
	report("deliveries of messages never sent", strays)
	if len(l.accepted) == 0 || refused == 0 || read == 0 {
		t.Errorf("the load proved little: %d accepted, %d refused, %d read", len(l.accepted), refused, read)
	}
}

// failover is a client's connection to every gateway: each call goes to the first
// gateway, in the client's order of preference, that is connected, so a client moves
// to another gateway when its own dies and comes back when it returns.
type failover []*grpc.ClientConn

func (f failover) pick() *grpc.ClientConn {
	for _, c := range f {
		if c.GetState() == connectivity.Ready {
			return c
		}
		c.Connect() // a connection whose gateway died waits idle until asked
	}
	return f[0]
}

func (f failover) Invoke(ctx context.Context, method string, args, reply any, opts ...grpc.CallOption) error {
	return f.pick().Invoke(ctx, method, args, reply, opts...)
}

func (f failover) NewStream(ctx context.Context, desc *grpc.StreamDesc, method string, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	return f.pick().NewStream(ctx, desc, method, opts...)
}

// ledger is what the business was promised: each message a Send accepted, and each
// a Send said it admitted nothing of.
type ledger struct {
	mu sync.Mutex
	// accepted are the accepted messages by client message id.
	accepted map[string]admitted
	// notAdmitted are the client message ids whose first Send said nothing was
	// admitted, and that were not sent again, with the Send's error; notAdmittedWhy
	// counts them by the call that failed and the gateway's reason.
	notAdmitted    map[string]string
	notAdmittedWhy map[string]int
	// unknown counts Sends retried because the last said the outcome was unknown;
	// duplicates, retries answered as the duplicate of an earlier admission, and
	// firstDuplicates, first tries so answered (the gateway retried its script).
	unknown, duplicates, firstDuplicates int
}

// admitted is one accepted message.
type admitted struct {
	person int
	id     string
}

// body is the text of the message with client message id cid.
func body(cid string) string { return "ledger entry " + cid }

// send sends one message until the gateway gives a definite answer: accepted (into
// the ledger), or, on the first try, "nothing was admitted" (dropped, and noted so as
// to check that it never arrives). After "outcome unknown" it sends the same client
// message id again, through whichever gateway is up, for as long as it takes: the
// first try may have been admitted, so only an acceptance ends it.
func (l *ledger) send(ctx context.Context, t *testing.T, b *client.Business, cid string, person int, to string) {
	wait := 50 * time.Millisecond
	for try := 0; ; try++ {
		call, cancel := context.WithTimeout(ctx, 5*time.Second)
		s, err := b.Send(call, to, e2e.Transactional, e2e.Receipt, []byte(body(cid)), client.WithClientMessageID(cid))
		cancel()
		var un *client.UnavailableError
		switch {
		case err == nil:
			l.mu.Lock()
			l.accepted[cid] = admitted{person, s.MessageID}
			switch {
			case s.Duplicate && try == 0:
				l.firstDuplicates++
			case s.Duplicate:
				l.duplicates++
			}
			l.mu.Unlock()
			return
		case ctx.Err() != nil:
			return
		case try == 0 && errors.As(err, &un) && !un.OutcomeUnknown:
			l.mu.Lock()
			l.notAdmitted[cid] = err.Error()
			l.notAdmittedWhy[un.Op+": "+reasonOf(un.Err)]++
			l.mu.Unlock()
			return
		case errors.As(err, &un) && un.OutcomeUnknown, errors.Is(err, context.DeadlineExceeded):
			l.mu.Lock()
			l.unknown++
			l.mu.Unlock()
		case errors.As(err, &un):
			// This try admitted nothing, but an earlier one may have: send it again.
		default:
			t.Errorf("send %s: %v", cid, err)
			return
		}
		time.Sleep(wait)
		wait = min(2*wait, time.Second)
	}
}

// reasonOf is the google.rpc.ErrorInfo reason of a gRPC status error, or "".
func reasonOf(err error) string {
	for _, d := range status.Convert(err).Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			return info.GetReason()
		}
	}
	return ""
}

// role is how a device answers what it receives.
type role int

const (
	// acks acknowledges every message.
	acks role = iota
	// refuses refuses, as badly signed, every message whose client id ends in 7, and
	// acknowledges the rest.
	refuses
	// reads reads every message whose client id ends in 3, and acknowledges the rest.
	reads
)

// verdict is how a device of role r answers the message with client id cid.
func (r role) verdict(cid string) client.Status {
	switch {
	case r == refuses && strings.HasSuffix(cid, "7"):
		return client.StatusFailed
	case r == reads && strings.HasSuffix(cid, "3"):
		return client.StatusRead
	}
	return client.StatusDelivered
}

// events are the status events a device of role r causes for the message with
// client id cid.
func (r role) events(cid string) []client.Status {
	switch v := r.verdict(cid); v {
	case client.StatusRead:
		return []client.Status{client.StatusDelivered, client.StatusRead}
	default:
		return []client.Status{v}
	}
}

// handset is a device of the test: it receives through the SDK and answers each
// message as its role says, and remembers what it received and answered.
type handset struct {
	*client.Device
	person int
	role   role

	mu sync.Mutex
	// received counts the times each message (by id) was received, and cids holds
	// the client message id each came with.
	received map[string]int
	cids     map[string]string
	// answered is what the device answered for each message, once the gateway
	// took the answer.
	answered map[string]client.Status
	// refused are the deliveries the SDK refused: none should be.
	refused []error
	retries int
}

// run receives and answers until ctx ends.
func (d *handset) run(ctx context.Context, t *testing.T) {
	for m, err := range d.Receive(ctx) {
		if ctx.Err() != nil {
			return
		}
		var rej *client.RejectedDeliveryError
		switch {
		case errors.As(err, &rej):
			d.mu.Lock()
			d.refused = append(d.refused, err)
			d.mu.Unlock()
			continue
		case err != nil:
			t.Errorf("device %s: receive: %v", d.ID(), err)
			return
		}
		d.mu.Lock()
		d.received[m.ID]++
		d.cids[m.ID] = m.ClientMessageID
		d.mu.Unlock()
		if string(m.Body) != body(m.ClientMessageID) {
			t.Errorf("device %s: message %s reads %q, want %q", d.ID(), m.ID, m.Body, body(m.ClientMessageID))
		}
		v := d.role.verdict(m.ClientMessageID)
		answer := func() error {
			switch v {
			case client.StatusFailed:
				return d.Reject(ctx, m.ID, client.RejectBadSignature)
			case client.StatusRead:
				return d.Read(ctx, m.ID)
			}
			return d.Ack(ctx, m.ID)
		}
		// Receive yields a message once per call, so it must be answered here: try
		// until the gateway takes the answer.
		for {
			err := answer()
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				return
			}
			var un *client.UnavailableError
			if !errors.As(err, &un) {
				t.Errorf("device %s: answer %s: %v", d.ID(), m.ID, err)
				return
			}
			d.mu.Lock()
			d.retries++
			d.mu.Unlock()
			time.Sleep(100 * time.Millisecond)
		}
		d.mu.Lock()
		d.answered[m.ID] = v
		d.mu.Unlock()
	}
}

func answerRetries(ds []*handset) int {
	n := 0
	for _, d := range ds {
		d.mu.Lock()
		n += d.retries
		d.mu.Unlock()
	}
	return n
}

// eventKey names a status event: a message, a device ("" for ACCEPTED), a status.
type eventKey struct {
	message, device string
	status          client.Status
}

// statusLog is every status event the business read.
type statusLog struct {
	mu    sync.Mutex
	total int
	// n counts each event.
	n map[eventKey]int
	// reasons are the FAILED events' reasons.
	reasons map[eventKey]client.RejectReason
	// clientIDs are the client message ids ACCEPTED events named, by message id.
	clientIDs map[string][]string
	cursor    string
}

// run reads the business's status stream until ctx ends; the SDK reconnects, from
// the last event read, when the stream breaks.
func (s *statusLog) run(ctx context.Context, t *testing.T, b *client.Business) {
	for e, err := range b.Statuses(ctx) {
		if err != nil {
			if ctx.Err() == nil {
				t.Errorf("status stream: %v", err)
			}
			return
		}
		k := eventKey{e.MessageID, e.DeviceID, e.Status}
		s.mu.Lock()
		s.total++
		s.n[k]++
		s.cursor = e.Cursor
		switch e.Status {
		case client.StatusFailed:
			s.reasons[k] = e.FailureReason
		case client.StatusAccepted:
			s.clientIDs[e.MessageID] = append(s.clientIDs[e.MessageID], e.ClientMessageID)
		}
		s.mu.Unlock()
	}
}

// missing is how many of want have not arrived.
func (s *statusLog) missing(want map[eventKey]bool) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for k := range want {
		if s.n[k] == 0 {
			n++
		}
	}
	return n
}

func (s *statusLog) lastCursor() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cursor
}
