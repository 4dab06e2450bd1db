package main

import (
	"fmt"
	"io"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
)

// report is a run's figures: every round's, their medians, and the goals.
type report struct {
	Config  reportConfig `json:"config"`
	Heraldd string       `json:"heraldd_version"`
	Redis   string       `json:"redis_version"`
	CPUs    int          `json:"cpus"`
	Memory  memory       `json:"memory"`
	// Rounds are each scenario's results, one a round, by scenario name.
	Rounds map[string][]result `json:"rounds"`
	// Median is each scenario's figures, each the median over rounds.
	Median map[string]result `json:"median"`
	Goals  []goalResult      `json:"goals"`
}

// reportConfig is the run's configuration, as the JSON output states it.
type reportConfig struct {
	Rounds           int     `json:"rounds"`
	ScenarioSeconds  float64 `json:"scenario_seconds"`
	Recipients       int     `json:"recipients"`
	MemoryDevices    int     `json:"memory_devices"`
	SteadyDevices    int     `json:"steady_devices"`
	SteadyRate       float64 `json:"steady_rate"`
	BroadcastDevices int     `json:"broadcast_devices"`
	BroadcastRate    float64 `json:"broadcast_rate"`
	Callers          int     `json:"callers"`
	Connections      int     `json:"connections"`
	BatchCallers     int     `json:"batch_callers"`
	BatchSize        int     `json:"batch_size"`
	PipelineCallers  int     `json:"pipeline_callers"`
	PipelineDepth    int     `json:"pipeline_depth"`
	CiphertextBytes  int     `json:"ciphertext_bytes"`
}

func reportConfigOf(c config) reportConfig {
	return reportConfig{Rounds: c.rounds, ScenarioSeconds: c.duration.Seconds(), Recipients: c.recipients,
		MemoryDevices: c.memoryDevices, SteadyDevices: c.steadyDevices, SteadyRate: c.steadyRate,
		BroadcastDevices: c.broadcastDevices, BroadcastRate: c.broadcastRate, Callers: callers,
		Connections: conns, BatchCallers: batchCallers, BatchSize: batchSize, PipelineCallers: pipelineCallers,
		PipelineDepth: pipelineDepth, CiphertextBytes: ciphertextSize}
}

// goalResult is one of the performance goals and how the run measured against it.
type goalResult struct {
	Name string `json:"name"`
	// Goal says it as the table does.
	Goal  string  `json:"goal"`
	Value float64 `json:"value"`
	Met   bool    `json:"met"`
}

// goal is one of Herald's performance goals: value, from the medians, at most (or at
// least) limit. The ratios are against the baselines measured in the same run, since
// absolute figures move between runs and machines.
type goal struct {
	name, text string
	value      func(*report) float64
	atMost     bool
	limit      float64
}

var goals = []goal{
	{"send_throughput", "≥ 0.7×", func(r *report) float64 { return ratio(r.med("send").MsgsPerSec, r.med("script_unary").MsgsPerSec) }, false, 0.7},
	{"send_p99", "≤ 1.5×", func(r *report) float64 { return ratio(r.med("send").P99Ms, r.med("script_unary").P99Ms) }, true, 1.5},
	{"send_redis_cpu", "≤ 30 µs", func(r *report) float64 { return r.med("send").RedisCPUUs }, true, 30},
	{"send_heraldd_cpu", "≤ 45 µs", func(r *report) float64 { return r.med("send").ServerCPUUs }, true, 45},
	{"send_batch_throughput", "≥ 0.4×", func(r *report) float64 {
		return ratio(r.med("send_batch").MsgsPerSec, r.med("pipelined_p16").MsgsPerSec)
	}, false, 0.4},
	{"memory_per_message", "≤ 400 B beyond the ciphertext", func(r *report) float64 { return r.Memory.PerMessage - ciphertextSize }, true, 400},
	{"memory_per_device", "≤ 200 B", func(r *report) float64 { return r.Memory.PerDevice }, true, 200},
	{"steady_round_trips", "≤ 3 round trips", func(r *report) float64 { return r.med("steady_delivery").NetRoundTrips }, true, 3},
	{"steady_heraldd_cpu", "≤ 150 µs heraldd CPU", func(r *report) float64 { return r.med("steady_delivery").NetServerCPUUs }, true, 150},
	{"broadcast_p99", "p99 ≤ 100 ms", func(r *report) float64 { return r.med("broadcast").DeliveryP99Ms }, true, 100},
	// At 5k msg/s: the rate achieved within 5% of it.
	{"broadcast_rate", "at 5k msg/s", func(r *report) float64 { return r.med("broadcast").MsgsPerSec }, false, 4750},
}

// med is a scenario's medians.
func (r *report) med(name string) result { return r.Median[name] }

// summarize takes the medians and checks the goals.
func (r *report) summarize() {
	r.Median = map[string]result{}
	for name, rs := range r.Rounds {
		r.Median[name] = medianResult(rs)
	}
	r.Goals = nil
	for _, g := range goals {
		v := g.value(r)
		met := v >= g.limit
		if g.atMost {
			met = v <= g.limit
		}
		if math.IsNaN(v) { // a baseline measured nothing
			v, met = 0, false
		}
		r.Goals = append(r.Goals, goalResult{Name: g.name, Goal: g.text, Value: v, Met: met})
	}
}

// medianResult is, figure by figure, the median of rs.
func medianResult(rs []result) result {
	var out result
	ov := reflect.ValueOf(&out).Elem()
	for i := range ov.NumField() {
		vals := make([]float64, len(rs))
		for j, r := range rs {
			f := reflect.ValueOf(r).Field(i)
			if f.CanInt() {
				vals[j] = float64(f.Int())
			} else {
				vals[j] = f.Float()
			}
		}
		m := median(vals)
		if f := ov.Field(i); f.CanInt() {
			f.SetInt(int64(math.Round(m)))
		} else {
			f.SetFloat(m)
		}
	}
	return out
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	v = slices.Clone(v)
	slices.Sort(v)
	if n := len(v); n%2 == 0 {
		return (v[n/2-1] + v[n/2]) / 2
	}
	return v[len(v)/2]
}

// ratio is a/b, NaN when b is 0.
func ratio(a, b float64) float64 {
	if b == 0 {
		return math.NaN()
	}
	return a / b
}

// mark is a goal's cell: the goal and whether it was met.
func (r *report) mark(names ...string) string {
	var parts []string
	for _, n := range names {
		for _, g := range r.Goals {
			if g.Name == n {
				verdict := "**not met**"
				if g.Met {
					verdict = "met"
				}
				parts = append(parts, g.Goal+": "+verdict)
			}
		}
	}
	return strings.Join(parts, "; ")
}

// writeTable writes the figures as a markdown table, with what they were measured
// under beneath it.
func (r *report) writeTable(w io.Writer) {
	send, script, empty := r.med("send"), r.med("script_unary"), r.med("empty_unary")
	batch, p16 := r.med("send_batch"), r.med("pipelined_p16")
	steady, bc := r.med("steady_delivery"), r.med("broadcast")
	c := r.Config
	rows := [][5]string{
		{"Send msgs/s", rate(send.MsgsPerSec), "1-EVALSHA unary " + rate(script.MsgsPerSec), "**" + ratioText(send.MsgsPerSec, script.MsgsPerSec) + "**", r.mark("send_throughput")},
		{"Send p50", millis(send.P50Ms), millis(script.P50Ms), ratioText(send.P50Ms, script.P50Ms), ""},
		{"Send p99", millis(send.P99Ms), millis(script.P99Ms), ratioText(send.P99Ms, script.P99Ms), r.mark("send_p99")},
		{"Redis CPU per Send", micros(send.RedisCPUUs), micros(script.RedisCPUUs), ratioText(send.RedisCPUUs, script.RedisCPUUs), r.mark("send_redis_cpu")},
		{"heraldd CPU per Send", micros(send.ServerCPUUs), micros(script.ServerCPUUs), ratioText(send.ServerCPUUs, script.ServerCPUUs), r.mark("send_heraldd_cpu")},
		{"Redis round trips per Send", decimal(send.RoundTrips), "1", "", ""},
		{"Send msgs/s, against a bare gRPC call", rate(send.MsgsPerSec), "empty unary " + rate(empty.MsgsPerSec), ratioText(send.MsgsPerSec, empty.MsgsPerSec), ""},
		{"Send p50 / p99, against a bare gRPC call", millis(send.P50Ms) + " / " + millis(send.P99Ms), millis(empty.P50Ms) + " / " + millis(empty.P99Ms), "", ""},
		{"heraldd CPU per Send, against a bare gRPC call", micros(send.ServerCPUUs), micros(empty.ServerCPUUs), ratioText(send.ServerCPUUs, empty.ServerCPUUs), ""},
		{"SendBatch msgs/s", rate(batch.MsgsPerSec), fmt.Sprintf("the small script pipelined (P%d) %s", pipelineDepth, rate(p16.MsgsPerSec)), "**" + ratioText(batch.MsgsPerSec, p16.MsgsPerSec) + "**", r.mark("send_batch_throughput")},
		{fmt.Sprintf("SendBatch p50 / p99 per call of %d", batchSize), millis(batch.P50Ms) + " / " + millis(batch.P99Ms), fmt.Sprintf("per pipeline of %d: %s / %s", pipelineDepth, millis(p16.P50Ms), millis(p16.P99Ms)), "", ""},
		{"Redis CPU per SendBatch message", micros(batch.RedisCPUUs), micros(p16.RedisCPUUs), ratioText(batch.RedisCPUUs, p16.RedisCPUUs), ""},
		{"heraldd CPU per SendBatch message", micros(batch.ServerCPUUs), "heraldbench, driving P16: " + micros(p16.ServerCPUUs), ratioText(batch.ServerCPUUs, p16.ServerCPUUs), ""},
		{fmt.Sprintf("Redis memory per queued %d-byte message", ciphertextSize), fmt.Sprintf("%s (%s beyond the ciphertext)", bytesText(r.Memory.PerMessage), bytesText(r.Memory.PerMessage-ciphertextSize)), "", fmt.Sprintf("%.1f× the ciphertext", r.Memory.PerMessage/ciphertextSize), r.mark("memory_per_message")},
		{"Redis memory per queued message, the first to its device", fmt.Sprintf("%s (%s beyond the ciphertext)", bytesText(r.Memory.PerFirstMessage), bytesText(r.Memory.PerFirstMessage-ciphertextSize)), "", fmt.Sprintf("%.1f× the ciphertext", r.Memory.PerFirstMessage/ciphertextSize), ""},
		{"Redis memory per registered device", bytesText(r.Memory.PerDevice), "", "", r.mark("memory_per_device")},
		{fmt.Sprintf("Live broadcast (SendBatch, %s connected devices)", thousands(float64(c.BroadcastDevices))), fmt.Sprintf("delivery p50 %s, p99 %s at %s msg/s", millis(bc.DeliveryP50Ms), millis(bc.DeliveryP99Ms), rate(bc.MsgsPerSec)), "", "", r.mark("broadcast_p99", "broadcast_rate")},
		{"Live broadcast, per message (admission and delivery)", fmt.Sprintf("Redis %s CPU, heraldd %s CPU, %s round trips", micros(bc.RedisCPUUs), micros(bc.ServerCPUUs), decimal(bc.RoundTrips)), "", "", ""},
		{fmt.Sprintf("Steady delivery (%s devices, %s msg/s), per delivered message", thousands(float64(c.SteadyDevices)), rate(c.SteadyRate)), fmt.Sprintf("%s Redis round trips, heraldd %s CPU, Redis %s CPU (net of admission)", decimal(steady.NetRoundTrips), micros(steady.NetServerCPUUs), micros(steady.NetRedisCPUUs)), "", "", r.mark("steady_round_trips", "steady_heraldd_cpu")},
		{"Steady delivery, delivery p50 / p99", millis(steady.DeliveryP50Ms) + " / " + millis(steady.DeliveryP99Ms), "", "", ""},
	}
	fmt.Fprintf(w, "Herald against its floors: heraldd %s, Redis %s, %d CPUs; median of %d interleaved rounds, %s per scenario each.\n\n",
		r.Heraldd, r.Redis, r.CPUs, c.Rounds, strconv.FormatFloat(c.ScenarioSeconds, 'f', -1, 64)+" s")
	fmt.Fprintln(w, "| figure | Herald | baseline | ratio | goal |")
	fmt.Fprintln(w, "|---|---|---|---|---|")
	for _, row := range rows {
		fmt.Fprintf(w, "| %s |\n", strings.Join(row[:], " | "))
	}
	fmt.Fprintf(w, `
- Redis: a redis-server of heraldbench's own with --save "" --appendonly no: this measures the gateway, not the disk.
- heraldd: its business's limits raised so that they never bind (the limit path still runs), --pair-interval 0, --pending-bytes-per-business 0, logs at info to a file (the access log runs).
- Send and the unary baselines: %d callers over %d connections, to %s one-device recipients round-robin, each message a %d-byte random envelope with its device's key id. The baselines are a grpc-go server (the same grpc version) in a process of its own: "empty" answers at once, "1-EVALSHA" runs one small script (HGET block + HGET consent + XADD MAXLEN ~ 100). SendBatch: %d callers, %d messages a call. P%d: %d goroutines of heraldbench sending pipelines of %d EVALSHA of that script straight to Redis; heraldbench's own CPU stands in the baseline column.
- Throughput and latency are those of the calls that ended in the measured window, after a warm-up. CPU per message: Redis's from INFO (used_cpu_user + used_cpu_sys), the server's from /proc/PID/stat (utime + stime), from a reading taken when heraldd and Redis were quiet (under 5%% of a core each) before the first call to one taken when they were quiet again after the last, over every message sent: it counts what the calls left to the background (status events to forward, say), and nothing left by what ran before.
- Steady delivery: every device acks each delivery as it comes (one Ack call each). Round trips (heraldd's herald_redis_duration_seconds_count, every op) and CPU are counted from before the streams open until heraldd is quiet after they closed, less what the same Sends cost without delivery: Sends at the same rate to as many devices without a stream, measured just before (%s round trips, %s heraldd CPU and %s Redis CPU per Send). Totals per delivered message: %s round trips, heraldd %s, Redis %s.
- Live broadcast: SendBatch calls of %d paced at %s msg/s in all, each message's latency from its call's turn to be sent (not from when it went: no coordinated omission) to its Delivery's arrival; the rate achieved is what arrived over the time from the first turn to the last arrival (at least the time the turns took). The devices acknowledge nothing while it runs (steady delivery measures acks): what they received is acknowledged afterwards, in as few calls as can be, outside the measure, so that no round leaves a backlog to the next.
- Memory: the growth of Redis's used_memory, less its clients' buffers (mem_clients_normal), over %s more devices registered, then over a first message queued to each (no stream open), then over a second to each (the per-message figure), each read once heraldd was quiet and Redis's memory had settled. Redis's tables of keys double in steps, so a doubling within a measure adds up to about 100 B to its figure at these counts. The keys then, by kind (MEMORY USAGE of a sample): %s.
`, c.Callers, c.Connections, thousands(float64(c.Recipients)), c.CiphertextBytes, c.BatchCallers, c.BatchSize, c.PipelineDepth, c.PipelineCallers, c.PipelineDepth,
		decimal(steady.AdmissionRoundTrips), micros(steady.AdmissionServerCPUUs), micros(steady.AdmissionRedisCPUUs),
		decimal(steady.RoundTrips), micros(steady.ServerCPUUs), micros(steady.RedisCPUUs),
		c.BatchSize, rate(c.BroadcastRate), thousands(float64(c.MemoryDevices)), kindsLine(r.Memory.KeyKinds))
	if steady.Undelivered > 0 || bc.Undelivered > 0 {
		fmt.Fprintf(w, "- Not delivered when heraldbench stopped waiting (median per round): %d in steady delivery, %d in the broadcast.\n", steady.Undelivered, bc.Undelivered)
	}
}

// rate is a rate of messages: 7.4k, 114k, 950.
func rate(v float64) string {
	switch {
	case v >= 100_000:
		return fmt.Sprintf("%.0fk", v/1000)
	case v >= 1000:
		return fmt.Sprintf("%.1fk", v/1000)
	}
	return fmt.Sprintf("%.0f", v)
}

// millis is a latency given in milliseconds.
func millis(v float64) string {
	switch {
	case v < 1:
		return fmt.Sprintf("%.0f µs", v*1000)
	case v < 100:
		return fmt.Sprintf("%.1f ms", v)
	}
	return thousands(v) + " ms"
}

// micros is a CPU time given in microseconds.
func micros(v float64) string {
	switch {
	case v < 100:
		return fmt.Sprintf("%.1f µs", v)
	case v < 10_000:
		return fmt.Sprintf("%.0f µs", v)
	}
	return fmt.Sprintf("%.1f ms", v/1000)
}

func bytesText(v float64) string { return thousands(v) + " B" }

func decimal(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) }

// ratioText is a/b to two places, or "" when b is 0.
func ratioText(a, b float64) string {
	q := ratio(a, b)
	switch {
	case math.IsNaN(q):
		return ""
	case q >= 10:
		return fmt.Sprintf("%.1f", q)
	}
	return fmt.Sprintf("%.2f", q)
}

// thousands is v rounded, with commas between thousands: 1,390.
func thousands(v float64) string {
	s := strconv.FormatInt(int64(math.Round(math.Abs(v))), 10)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	if v < 0 && s != "0" {
		s = "-" + s
	}
	return s
}
