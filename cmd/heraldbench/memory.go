package main

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
)

// memory is what Redis holds per registered device and per queued message: the growth
// of its used_memory, less its clients' buffers (which come and go with the
// connections, whatever they hold), over registering devices and then sending them
// messages.
type memory struct {
	// Devices is how many devices were registered, and messages queued to them one
	// at a time, to measure.
	Devices int `json:"devices"`
	// PerDevice is the growth per registered device, in bytes.
	PerDevice float64 `json:"bytes_per_device"`
	// PerMessage is the growth per queued single-device message with a
	// ciphertextSize-byte envelope (to a device without a stream) that had one
	// before: what each further message costs, in bytes.
	PerMessage float64 `json:"bytes_per_queued_message"`
	// PerFirstMessage is the same for the first message to each device, with what a
	// business's first message to a person creates besides.
	PerFirstMessage float64 `json:"bytes_per_first_queued_message"`
	// KeyKinds are the keys Redis held afterwards, by kind, with a sample of each
	// kind's MEMORY USAGE.
	KeyKinds []keyKind `json:"key_kinds"`
}

// keyKind is the keys of one pattern.
type keyKind struct {
	// Pattern is a key with its ids replaced by *.
	Pattern string `json:"pattern"`
	// Keys is how many keys of the pattern Redis held.
	Keys int `json:"keys"`
	// MeanBytes is the mean MEMORY USAGE of a sample of them.
	MeanBytes float64 `json:"mean_bytes"`
}

// measureMemory registers devices (numbers from first on) and queues two messages to
// each, one after the other, reading Redis's memory once it settles after each step.
func (b *bench) measureMemory(ctx context.Context, first, count int) (memory, error) {
	m := memory{Devices: count}
	// Have heraldd open as many connections to Redis as the Sends below will need.
	warm := make([]*heraldv1.Message, 4*callers)
	for i := range warm {
		warm[i] = message(b.sendTo[i%len(b.sendTo)], id("w", 0, int64(i)))
	}
	if err := b.sendAll(ctx, warm); err != nil {
		return m, err
	}
	m0, err := b.settledMemory(ctx)
	if err != nil {
		return m, err
	}
	devs, err := b.register(ctx, first, count)
	if err != nil {
		return m, err
	}
	m1, err := b.settledMemory(ctx)
	if err != nil {
		return m, err
	}
	mark := []float64{m1}
	for n := range 2 {
		msgs := make([]*heraldv1.Message, count)
		for i, d := range devs {
			msgs[i] = message(d, id("m", n, int64(i)))
		}
		if err := b.sendAll(ctx, msgs); err != nil {
			return m, err
		}
		v, err := b.settledMemory(ctx)
		if err != nil {
			return m, err
		}
		mark = append(mark, v)
	}
	m.PerDevice = (m1 - m0) / float64(count)
	m.PerFirstMessage = (mark[1] - mark[0]) / float64(count)
	m.PerMessage = (mark[2] - mark[1]) / float64(count)
	m.KeyKinds, err = b.keyKinds(ctx)
	return m, err
}

// sendAll sends msgs with Send from callers at once, and checks each was admitted.
func (b *bench) sendAll(ctx context.Context, msgs []*heraldv1.Message) error {
	clients := b.messaging(b.herald)
	var next atomic.Int64
	g, gctx := newGroup(bearer(ctx, b.apiKey))
	for c := range callers {
		g.Go(func() error {
			for i := next.Add(1) - 1; i < int64(len(msgs)); i = next.Add(1) - 1 {
				resp, err := clients[c%len(clients)].Send(gctx, &heraldv1.SendRequest{Message: msgs[i]})
				if err != nil {
					return fmt.Errorf("calling Send: %w", err)
				}
				if err := accepted(resp.GetResult()); err != nil {
					return err
				}
			}
			return nil
		})
	}
	return g.Wait()
}

// settledMemory is Redis's memory once heraldd is done with what it does in the
// background after the calls (forwarding status events, indexing expiries) and Redis
// with what it does after them: a hash table that grew is rehashed a step at a time,
// and holds its old table until done. It is the first of three readings a quarter of a
// second apart that agree within 4 KiB, or the last reading after ten seconds.
func (b *bench) settledMemory(ctx context.Context) (float64, error) {
	if err := b.quiet(ctx); err != nil {
		return 0, err
	}
	deadline := time.Now().Add(10 * time.Second)
	var readings []float64
	for {
		v, err := b.usedMemory(ctx)
		if err != nil {
			return 0, err
		}
		if len(readings) > 0 && math.Abs(v-readings[0]) > 4<<10 {
			readings = readings[:0]
		}
		readings = append(readings, v)
		if len(readings) == 3 || time.Now().After(deadline) {
			return readings[0], nil
		}
		if err := sleep(ctx, 250*time.Millisecond); err != nil {
			return 0, err
		}
	}
}

var (
	// hashTag is a key's hash tag, whose id a pattern hides.
	hashTag = regexp.MustCompile(`\{([a-z]+):[^}]*\}`)
	// idLike is a part of a key that names one thing rather than a kind: it holds a
	// digit, or is long.
	idLike = regexp.MustCompile(`[0-9]|^.{12,}$`)
)

// keyKinds groups Redis's keys by pattern, with the mean MEMORY USAGE of up to 20
// keys of each.
func (b *bench) keyKinds(ctx context.Context) ([]keyKind, error) {
	const sample = 20
	counts := map[string]int{}
	samples := map[string][]string{}
	iter := b.rdb.Scan(ctx, 0, "", 1000).Iterator()
	for iter.Next(ctx) {
		k := iter.Val()
		p := keyPattern(k)
		counts[p]++
		if len(samples[p]) < sample {
			samples[p] = append(samples[p], k)
		}
	}
	if err := iter.Err(); err != nil {
		return nil, fmt.Errorf("scan Redis's keys: %w", err)
	}
	var kinds []keyKind
	for p, ks := range samples {
		var sum, n float64
		for _, k := range ks {
			v, err := b.rdb.MemoryUsage(ctx, k).Result()
			if err != nil {
				continue // gone meanwhile
			}
			sum += float64(v)
			n++
		}
		if n > 0 {
			kinds = append(kinds, keyKind{Pattern: p, Keys: counts[p], MeanBytes: sum / n})
		}
	}
	slices.SortFunc(kinds, func(a, b keyKind) int { return strings.Compare(a.Pattern, b.Pattern) })
	return kinds, nil
}

// keyPattern is key with the ids in it replaced by *: hr:{u:…}:msg:…:… becomes
// hr:{u:*}:msg:*:*.
func keyPattern(key string) string {
	var out []string
	rest := key
	if loc := hashTag.FindStringSubmatchIndex(key); loc != nil {
		head := key[:loc[0]]
		for _, part := range strings.Split(head, ":") {
			out = append(out, maskID(part))
		}
		out[len(out)-1] += "{" + key[loc[2]:loc[3]] + ":*}"
		rest = strings.TrimPrefix(key[loc[1]:], ":")
		if rest == "" {
			return strings.Join(out, ":")
		}
	}
	for _, part := range strings.Split(rest, ":") {
		out = append(out, maskID(part))
	}
	return strings.Join(out, ":")
}

func maskID(part string) string {
	if idLike.MatchString(part) {
		return "*"
	}
	return part
}

// kindsLine is the key kinds in one line, biggest total first.
func kindsLine(kinds []keyKind) string {
	kinds = slices.Clone(kinds)
	slices.SortFunc(kinds, func(a, b keyKind) int {
		return cmp.Compare(b.MeanBytes*float64(b.Keys), a.MeanBytes*float64(a.Keys))
	})
	parts := make([]string, len(kinds))
	for i, k := range kinds {
		parts[i] = fmt.Sprintf("`%s` %s × %s B", k.Pattern, strconv.Itoa(k.Keys), strconv.FormatFloat(k.MeanBytes, 'f', 0, 64))
	}
	return strings.Join(parts, ", ")
}
