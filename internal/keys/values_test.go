package keys_test

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/keys"
)

// ms is a time as the codecs keep it: whole milliseconds.
func ms(n int64) time.Time { return time.UnixMilli(n) }

func TestMessageID(t *testing.T) {
	t.Parallel()
	uid := keys.UID([]byte("secret"), "+14155550100")
	now := time.Now()
	a, b := keys.NewMessageID(uid, now), keys.NewMessageID(uid, now)
	if a == b {
		t.Fatalf("two ids made at once are equal: %s", a)
	}
	if got, ok := keys.MessageUID(a); !ok || got != uid {
		t.Fatalf("MessageUID(%s) = %q, %v; want %q", a, got, ok, uid)
	}
	// Ids sort by admission time across milliseconds, whatever the time's digits:
	// across 2,000 consecutive milliseconds every id sorts before the next one's.
	for i := range 2000 {
		at := now.Add(time.Duration(i) * time.Millisecond)
		if x, y := keys.NewMessageID(uid, at), keys.NewMessageID(uid, at.Add(time.Millisecond)); x >= y {
			t.Fatalf("%s sorts after the later %s", x, y)
		}
	}
	for _, bad := range []string{"", uid, uid + ".", uid + ".short", "x" + a, a + "a", strings.ToUpper(a),
		strings.Replace(a, ".", "-", 1), uid + ".000000000000000000000_a"} {
		if got, ok := keys.MessageUID(bad); ok {
			t.Errorf("MessageUID(%q) = %q, true; want not a message id", bad, got)
		}
	}
}

func TestEventCodec(t *testing.T) {
	t.Parallel()
	for _, e := range []keys.Event{
		{Status: keys.StatusAccepted, Business: "biz_a", MessageID: "m1", ClientMessageID: "c-1", Time: ms(1000)},
		{Status: keys.StatusExpired, Business: "biz_a", MessageID: "m1", ClientMessageID: "c:1", DeviceID: "d1", Time: ms(2000)},
		{Status: keys.StatusFailed, Business: "biz_a", MessageID: "m1", ClientMessageID: "c1", DeviceID: "d1", Time: ms(3000),
			Reason: keys.RejectBadSignature},
	} {
		line := e.Encode()
		got, err := keys.ParseEvent(line)
		if err != nil || got != e {
			t.Fatalf("ParseEvent(%q) = %+v, %v; want %+v", line, got, err, e)
		}
		vals := map[string]any{}
		kv := e.StreamValues()
		for i := 0; i < len(kv); i += 2 {
			vals[kv[i].(string)] = kv[i+1]
		}
		if got, err := keys.ParseStreamEvent(e.Business, vals); err != nil || got != e {
			t.Fatalf("ParseStreamEvent(%v) = %+v, %v; want %+v", vals, got, err, e)
		}
	}
	if line := (keys.Event{Status: keys.StatusAccepted, Business: "b", MessageID: "m", ClientMessageID: "c", Time: ms(5)}).Encode(); line != "A|b|m|c||5" {
		t.Fatalf("accepted event line = %q", line)
	}
	for _, bad := range []string{"", "not an event", "A|b|m|c||", "A|b|m|c||x", "Q|b|m|c|d|1", "A|b|m|c|d|1",
		"D|b|m|c||1", "D||m|c|d|1", "D|b|m|c|d|1|replay", "F|b|m|c|d|1", "F|b|m|c|d|1|nonsense",
		"F|b|m|c|d|1|replay|extra"} {
		if _, err := keys.ParseEvent(bad); !errors.Is(err, keys.ErrMalformed) {
			t.Errorf("ParseEvent(%q) = %v, want ErrMalformed", bad, err)
		}
	}
	if _, err := keys.ParseStreamEvent("b", map[string]any{"s": "D", "m": "m", "t": "1"}); !errors.Is(err, keys.ErrMalformed) {
		t.Errorf("a delivered entry without a device parsed: %v", err)
	}
}

func TestDeviceRecordCodec(t *testing.T) {
	t.Parallel()
	r := keys.DeviceRecord{Algorithm: 2, PublicKey: []byte{0, 1, 2, 250}, TokenHash: "ab12", Created: ms(1234), KeyID: "k1"}
	line := r.Encode()
	if line != "2|AAEC+g==|ab12|1234|k1" {
		t.Fatalf("Encode = %q", line)
	}
	got, err := keys.ParseDeviceRecord(line)
	if err != nil || !reflect.DeepEqual(got, r) {
		t.Fatalf("ParseDeviceRecord = %+v, %v; want %+v", got, err, r)
	}
	for _, bad := range []string{"", "2|AAEC|ab|1", "x|AAEC|ab|1|k", "2|%%%|ab|1|k", "2|AAEC|ab|t|k", "2|AAEC|ab|1|k|x"} {
		if _, err := keys.ParseDeviceRecord(bad); !errors.Is(err, keys.ErrMalformed) {
			t.Errorf("ParseDeviceRecord(%q) = %v, want ErrMalformed", bad, err)
		}
	}
}

// hash turns a codec's HSET arguments into the hash Redis would hold.
func hash(kv []any) map[string]string {
	h := map[string]string{}
	for i := 0; i < len(kv); i += 2 {
		h[kv[i].(string)] = kv[i+1].(string)
	}
	return h
}

func TestMessageCodec(t *testing.T) {
	t.Parallel()
	m := keys.Message{Business: "biz_a", Category: keys.CategoryMarketing, Kind: "offer", ClientMessageID: "c1",
		Sent: ms(1000), Expires: ms(5000), BodyHash: "ff00", SigningKeyID: "sk1",
		Devices: map[string]keys.MessageDevice{
			"d1": {State: keys.StateQueued, KeyID: "k1"},
			"d2": {State: keys.StateRead, Report: "spam"},
		}}
	h := hash(m.Fields())
	got, err := keys.ParseMessage(h)
	if err != nil || !reflect.DeepEqual(got, m) {
		t.Fatalf("ParseMessage(%v) = %+v, %v; want %+v", h, got, err, m)
	}

	// One device's view, as HMGET MessageFields returns it.
	fields := keys.MessageFields("d1")
	vals := make([]any, len(fields))
	for i, f := range fields {
		if v, ok := h[f]; ok {
			vals[i] = v
		}
	}
	view, err := keys.ParseMessageFields("d1", vals)
	want := m
	want.Devices = map[string]keys.MessageDevice{"d1": m.Devices["d1"]}
	if err != nil || !reflect.DeepEqual(view, want) {
		t.Fatalf("ParseMessageFields = %+v, %v; want %+v", view, err, want)
	}

	for name, edit := range map[string]func(map[string]string){
		"no business":              func(h map[string]string) { delete(h, keys.MessageBusiness) },
		"bad category":             func(h map[string]string) { h[keys.MessageCategory] = "z" },
		"bad expiry":               func(h map[string]string) { h[keys.MessageExpires] = "soon" },
		"no sent time":             func(h map[string]string) { delete(h, keys.MessageSent) },
		"bad state":                func(h map[string]string) { h[keys.MessageState("d1")] = "w" },
		"key id, no state":         func(h map[string]string) { h[keys.MessageKeyID("d3")] = "k" },
		"unknown field":            func(h map[string]string) { h["body"] = "x" },
		"unknown per-device field": func(h map[string]string) { h["st:d1"] = "q" },
	} {
		bad := hash(m.Fields())
		edit(bad)
		if _, err := keys.ParseMessage(bad); !errors.Is(err, keys.ErrMalformed) {
			t.Errorf("%s: ParseMessage = %v, want ErrMalformed", name, err)
		}
	}
	if _, err := keys.ParseMessageFields("d1", vals[:3]); !errors.Is(err, keys.ErrMalformed) {
		t.Errorf("short HMGET reply parsed: %v", err)
	}
}

// TestSettledMessageCodec: a settled record keeps the business, the client message id
// and each device's state and report, and nothing a message in flight needs besides.
func TestSettledMessageCodec(t *testing.T) {
	t.Parallel()
	m := keys.Message{Settled: true, Business: "biz_a", ClientMessageID: "c1", Devices: map[string]keys.MessageDevice{
		"d1": {State: keys.StateRead, Report: "spam"}, "d2": {State: keys.StateFailed}, "d3": {State: keys.StateDelivered}}}
	h := hash(m.Fields())
	if len(h) != 6 {
		t.Fatalf("settled record %v, want 6 fields", h)
	}
	got, err := keys.ParseMessage(h)
	if err != nil || !reflect.DeepEqual(got, m) {
		t.Fatalf("ParseMessage(%v) = %+v, %v; want %+v", h, got, err, m)
	}
	for name, edit := range map[string]func(map[string]string){
		"no business":         func(h map[string]string) { delete(h, keys.MessageBusiness) },
		"a device queued":     func(h map[string]string) { h[keys.MessageState("d2")] = keys.StateQueued },
		"nobody received it":  func(h map[string]string) { h[keys.MessageState("d1")], h[keys.MessageState("d3")] = "x", "f" },
		"a key id kept":       func(h map[string]string) { h[keys.MessageKeyID("d1")] = "k" },
		"the category kept":   func(h map[string]string) { h[keys.MessageCategory] = keys.CategoryMarketing },
		"the body hash kept":  func(h map[string]string) { h[keys.MessageBody] = "ff00" },
		"an unknown field":    func(h map[string]string) { h["z"] = "1" },
		"bad state":           func(h map[string]string) { h[keys.MessageState("d3")] = "w" },
		"a report, no state":  func(h map[string]string) { h[keys.MessageReport("d4")] = "spam" },
		"a sent time, no exp": func(h map[string]string) { h[keys.MessageSent] = "1000" },
	} {
		bad := hash(m.Fields())
		edit(bad)
		if _, err := keys.ParseMessage(bad); !errors.Is(err, keys.ErrMalformed) {
			t.Errorf("%s: ParseMessage = %v, want ErrMalformed", name, err)
		}
	}
}

func TestPrefCodec(t *testing.T) {
	t.Parallel()
	own := keys.OwnConsent{Consent: keys.ConsentOut, At: ms(10)}
	rec := keys.RecordedConsent{Consent: keys.ConsentIn, At: ms(20), Source: "web form", Reference: "ref-1", Collected: ms(15)}
	var kv []any
	kv = append(kv, keys.BlockFields(true, ms(5))...)
	kv = append(kv, own.Fields(keys.CategoryMarketing)...)
	kv = append(kv, rec.Fields(keys.CategoryTransactional)...)
	kv = append(kv, keys.PrefPairTAT, "7000", keys.PrefLast, "6000")
	h := hash(kv)
	want := keys.Pref{Blocked: true, BlockedAt: ms(5), Own: map[string]keys.OwnConsent{"m": own},
		Recorded: map[string]keys.RecordedConsent{"t": rec}, PairTAT: ms(7000), Last: ms(6000)}
	got, err := keys.ParsePref(h)
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("ParsePref(%v) = %+v, %v; want %+v", h, got, err, want)
	}
	if h["u_m"] != "out" || h["b_t_src"] != "web form" || h["blk"] != "1" {
		t.Fatalf("pref fields = %v", h)
	}
	if got, err := keys.ParsePref(map[string]string{}); err != nil || got.Blocked {
		t.Fatalf("an empty pref = %+v, %v", got, err)
	}
	for _, bad := range []map[string]string{
		{"blk": "yes"},
		{"u_t": "maybe"},
		{"u_x": "in"},
		{"u_t_at": "5"},
		{"b_t": "in", "b_t_when": "5"},
		{"b_t": "in", "b_t_col": "yesterday"},
		{"tat": "later"},
		{"mystery": "1"},
	} {
		if _, err := keys.ParsePref(bad); !errors.Is(err, keys.ErrMalformed) {
			t.Errorf("ParsePref(%v) = %v, want ErrMalformed", bad, err)
		}
	}
}

func TestConsentChangeCodec(t *testing.T) {
	t.Parallel()
	for _, c := range []keys.ConsentChange{
		{Business: "biz_a", What: "block", By: keys.ConsentByUser, Time: ms(1)},
		{Business: "biz_a", Category: "m", Consent: "in", By: keys.ConsentByUser, Time: ms(2)},
		{Business: "biz_a", Category: "t", Consent: "out", By: keys.ConsentByBusiness("web"), Reference: "r", Collected: ms(1), Time: ms(3)},
	} {
		vals := map[string]any{}
		kv := c.Values()
		for i := 0; i < len(kv); i += 2 {
			vals[kv[i].(string)] = kv[i+1]
		}
		if got, err := keys.ParseConsentChange(vals); err != nil || got != c {
			t.Fatalf("ParseConsentChange(%v) = %+v, %v; want %+v", vals, got, err, c)
		}
	}
	for _, bad := range []map[string]any{
		{"b": "biz", "what": "block", "by": "user"},
		{"b": "biz", "what": "mute", "by": "user", "t": "1"},
		{"b": "biz", "c": "t", "v": "perhaps", "by": "user", "t": "1"},
		{"b": "biz", "c": "t", "v": "in", "by": "someone", "t": "1"},
		{"c": "t", "v": "in", "by": "user", "t": "1"},
	} {
		if _, err := keys.ParseConsentChange(bad); !errors.Is(err, keys.ErrMalformed) {
			t.Errorf("ParseConsentChange(%v) = %v, want ErrMalformed", bad, err)
		}
	}
}

func TestSmallRecordCodecs(t *testing.T) {
	t.Parallel()
	c := keys.Code{Hash: "abc", Failures: 2}
	if got, err := keys.ParseCode(hash(c.Fields())); err != nil || got != c {
		t.Fatalf("ParseCode = %+v, %v", got, err)
	}
	if _, err := keys.ParseCode(map[string]string{"h": "abc"}); !errors.Is(err, keys.ErrMalformed) {
		t.Errorf("a code without its count parsed: %v", err)
	}

	b := keys.BusinessRecord{DisplayName: "Acme", Created: ms(9),
		Limits: &keys.BusinessLimits{PerSecond: 2.5, Burst: 5, DailyUnique: 0}}
	if got, err := keys.ParseBusiness(hash(b.Fields())); err != nil || !reflect.DeepEqual(got, b) {
		t.Fatalf("ParseBusiness = %+v, %v; want %+v", got, err, b)
	}
	if got, err := keys.ParseBusiness(map[string]string{"display_name": "Acme"}); err != nil || got.Limits != nil {
		t.Fatalf("a business without limits = %+v, %v", got, err)
	}
	if _, err := keys.ParseBusiness(map[string]string{"display_name": "Acme", "mps": "fast"}); !errors.Is(err, keys.ErrMalformed) {
		t.Errorf("bad limits parsed: %v", err)
	}

	k := keys.APIKeyRecord{Business: "biz_a", Hash: "h", Created: ms(3), Revoked: ms(4)}
	if got, err := keys.ParseAPIKey(hash(k.Fields())); err != nil || got != k {
		t.Fatalf("ParseAPIKey = %+v, %v", got, err)
	}
	if _, err := keys.ParseAPIKey(map[string]string{}); !errors.Is(err, keys.ErrMalformed) {
		t.Errorf("an empty API key parsed: %v", err)
	}

	q, err := keys.ParseQuality(map[string]string{keys.QualityDelivered(7): "10", keys.QualityReported(7): "1",
		keys.QualityReported(8): "2", keys.QualityStepped: "99"})
	want := keys.QualityCounters{Delivered: map[int64]int64{7: 10}, Reported: map[int64]int64{7: 1, 8: 2}, Stepped: ms(99)}
	if err != nil || !reflect.DeepEqual(q, want) {
		t.Fatalf("ParseQuality = %+v, %v; want %+v", q, err, want)
	}
	for _, bad := range []map[string]string{{"d:x": "1"}, {"d:1": "many"}, {"z:1": "1"}, {"stepped": "then"}} {
		if _, err := keys.ParseQuality(bad); !errors.Is(err, keys.ErrMalformed) {
			t.Errorf("ParseQuality(%v) = %v, want ErrMalformed", bad, err)
		}
	}
}

// TestBusinessSigningKeysCodec: a business's signing keys keep how each came and where
// it stands; a record that contradicts itself is malformed.
func TestBusinessSigningKeysCodec(t *testing.T) {
	t.Parallel()
	key := func(b byte) []byte { k := make([]byte, 32); k[0] = b; return k }
	sig := make([]byte, 64)
	sig[5] = 9
	b := keys.BusinessRecord{DisplayName: "Acme", Created: ms(9), CurrentSigningKey: "k4",
		SigningKeys: map[string]keys.SigningKeyRecord{
			"k1": {PublicKey: key(1), Origin: keys.SigningKeyFirst, State: keys.SigningKeyRetired},
			"k2": {PublicKey: key(2), Origin: keys.SigningKeyEndorsed, EndorsedBy: "k1", Endorsement: sig, State: keys.SigningKeySetAside},
			"k3": {PublicKey: key(3), Origin: keys.SigningKeyReplaced, State: keys.SigningKeyInUse},
			"k4": {PublicKey: key(4), Origin: keys.SigningKeyEndorsed, EndorsedBy: "k3", Endorsement: sig, State: keys.SigningKeyInUse},
		}}
	h := hash(b.Fields())
	if got, err := keys.ParseBusiness(h); err != nil || !reflect.DeepEqual(got, b) {
		t.Fatalf("ParseBusiness = %+v, %v; want %+v", got, err, b)
	}
	if h[keys.BusinessSigningKey] != "k4" || h[keys.BusinessSigningKeyOf("k1")] != "AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=|f|||x" {
		t.Fatalf("signing key fields = %v", h)
	}

	for name, edit := range map[string]func(map[string]string){
		"current key unknown":        func(h map[string]string) { h[keys.BusinessSigningKey] = "k9" },
		"current key set aside":      func(h map[string]string) { h[keys.BusinessSigningKey] = "k2" },
		"current key retired":        func(h map[string]string) { h[keys.BusinessSigningKey] = "k1" },
		"short key":                  func(h map[string]string) { h[keys.BusinessSigningKeyOf("k1")] = "AQID|f|||x" },
		"raw key":                    func(h map[string]string) { h[keys.BusinessSigningKeyOf("k1")] = string(key(1)) },
		"unknown origin":             func(h map[string]string) { setField(h, "k3", 1, "z") },
		"unknown state":              func(h map[string]string) { setField(h, "k3", 4, "") },
		"endorsed without endorser":  func(h map[string]string) { setField(h, "k4", 2, "") },
		"endorsed without signature": func(h map[string]string) { setField(h, "k4", 3, "") },
		"first with an endorsement":  func(h map[string]string) { setField(h, "k1", 3, "AAAA") },
		"replaced with an endorser":  func(h map[string]string) { setField(h, "k3", 2, "k1") },
		"signature not base64":       func(h map[string]string) { setField(h, "k4", 3, "%%") },
		"a field too many":           func(h map[string]string) { h[keys.BusinessSigningKeyOf("k3")] += "|" },
	} {
		bad := hash(b.Fields())
		edit(bad)
		if _, err := keys.ParseBusiness(bad); !errors.Is(err, keys.ErrMalformed) {
			t.Errorf("%s: ParseBusiness = %v, want ErrMalformed", name, err)
		}
	}
}

// setField sets field i of the signing key line of id in h.
func setField(h map[string]string, id string, i int, v string) {
	f := strings.Split(h[keys.BusinessSigningKeyOf(id)], "|")
	f[i] = v
	h[keys.BusinessSigningKeyOf(id)] = strings.Join(f, "|")
}
