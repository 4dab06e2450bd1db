package main

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// server is the process a scenario measures the CPU of: heraldd for Herald, the
// baseline server for the unary baselines, heraldbench itself where it drives Redis.
type server struct {
	name string
	pid  int
	// metrics is heraldd's metrics URL, to count its Redis round trips; "" for the
	// others.
	metrics string
}

// sample is what the counters read at one moment.
type sample struct {
	at time.Time
	// redisCPU is Redis's used_cpu_user + used_cpu_sys (INFO cpu).
	redisCPU time.Duration
	// serverCPU is the server's utime + stime (/proc/PID/stat); clientCPU
	// heraldbench's own.
	serverCPU, clientCPU time.Duration
	// roundTrips is heraldd's herald_redis_duration_seconds_count summed over its op
	// labels.
	roundTrips float64
}

// window is what the counters measured between two samples.
type window struct {
	elapsed                        time.Duration
	redisCPU, serverCPU, clientCPU time.Duration
	roundTrips                     float64
}

func (s sample) to(e sample) window {
	return window{elapsed: e.at.Sub(s.at), redisCPU: e.redisCPU - s.redisCPU, serverCPU: e.serverCPU - s.serverCPU,
		clientCPU: e.clientCPU - s.clientCPU, roundTrips: e.roundTrips - s.roundTrips}
}

// perMessage is a duration per message in microseconds.
func perMessage(d time.Duration, msgs int64) float64 {
	if msgs <= 0 {
		return 0
	}
	return float64(d) / float64(time.Microsecond) / float64(msgs)
}

// sample reads the counters of Redis and srv.
func (b *bench) sample(ctx context.Context, srv server) (sample, error) {
	s := sample{at: time.Now()}
	var err error
	if s.serverCPU, err = cpuTime(srv.pid); err != nil {
		return sample{}, err
	}
	if s.clientCPU, err = cpuTime(b.self); err != nil {
		return sample{}, err
	}
	if s.redisCPU, err = b.redisCPU(ctx); err != nil {
		return sample{}, err
	}
	if srv.metrics != "" {
		mf, err := scrape(ctx, srv.metrics)
		if err != nil {
			return sample{}, err
		}
		s.roundTrips = roundTrips(mf)
	}
	return s, nil
}

// Quiet is heraldd and Redis each using at most 5% of a core over a quarter of a
// second: their periodic work (sweeps, Redis's cron) and nothing more.
const (
	quietSpan  = 250 * time.Millisecond
	quietLimit = quietSpan / 20
	quietWait  = 30 * time.Second
)

// quiet waits until heraldd and Redis are quiet; past quietWait it says so and goes
// on.
func (b *bench) quiet(ctx context.Context) error {
	srv := server{name: "heraldd", pid: b.heraldd.pid()}
	prev, err := b.sample(ctx, srv)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(quietWait)
	for {
		if err := sleep(ctx, quietSpan); err != nil {
			return err
		}
		cur, err := b.sample(ctx, srv)
		if err != nil {
			return err
		}
		w := prev.to(cur)
		if w.serverCPU <= quietLimit && w.redisCPU <= quietLimit {
			return nil
		}
		if time.Now().After(deadline) {
			b.say("heraldd and Redis not quiet within %v (heraldd used %v of CPU and Redis %v in the last %v); measuring on",
				quietWait, w.serverCPU, w.redisCPU.Round(time.Millisecond), quietSpan)
			return nil
		}
		prev = cur
	}
}

// redisCPU is the CPU time Redis has used, from INFO cpu.
func (b *bench) redisCPU(ctx context.Context) (time.Duration, error) {
	f, err := b.info(ctx, "cpu", "used_cpu_user", "used_cpu_sys")
	if err != nil {
		return 0, err
	}
	return time.Duration((f[0] + f[1]) * float64(time.Second)), nil
}

// usedMemory is Redis's used_memory less its clients' buffers (mem_clients_normal),
// in bytes.
func (b *bench) usedMemory(ctx context.Context) (float64, error) {
	f, err := b.info(ctx, "memory", "used_memory", "mem_clients_normal")
	if err != nil {
		return 0, err
	}
	return f[0] - f[1], nil
}

// info reads numeric fields of one section of Redis's INFO.
func (b *bench) info(ctx context.Context, section string, fields ...string) ([]float64, error) {
	text, err := b.rdb.Info(ctx, section).Result()
	if err != nil {
		return nil, fmt.Errorf("redis INFO %s: %w", section, err)
	}
	vals := map[string]string{}
	for _, line := range strings.Split(text, "\r\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			vals[k] = v
		}
	}
	out := make([]float64, len(fields))
	for i, f := range fields {
		v, err := strconv.ParseFloat(vals[f], 64)
		if err != nil {
			return nil, fmt.Errorf("redis INFO %s: no number %s: %w", section, f, err)
		}
		out[i] = v
	}
	return out, nil
}

// scrape reads heraldd's metrics.
func scrape(ctx context.Context, url string) (map[string]*dto.MetricFamily, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("scrape heraldd's metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("scrape heraldd's metrics: %s", resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mf, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("parse heraldd's metrics: %w", err)
	}
	return mf, nil
}

// roundTrips is heraldd's count of Redis round trips so far, every op label together
// (a pipeline counts once).
func roundTrips(mf map[string]*dto.MetricFamily) float64 {
	var n float64
	for _, m := range mf["herald_redis_duration_seconds"].GetMetric() {
		n += float64(m.GetHistogram().GetSampleCount())
	}
	return n
}

// receiveStreams is how many Receive streams heraldd has open.
func receiveStreams(mf map[string]*dto.MetricFamily) float64 {
	for _, m := range mf["herald_rpc_streams_open"].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == "method" && l.GetValue() == "herald.v1.RecipientService/Receive" {
				return m.GetGauge().GetValue()
			}
		}
	}
	return 0
}
