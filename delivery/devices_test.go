package delivery

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/keys"
)

// TestRegister: a verification code registers one device at most; a wrong code is
// counted, and CodeTries of them spend it; a number holds at most MaxDevices devices.
func TestRegister(t *testing.T) {
	t.Parallel()
	const right, wrong = "right", "wrong"
	bad := slices.Repeat([]error{ErrBadCode}, CodeTries)
	for i, tc := range []struct {
		name     string
		noCode   bool // no code was issued for the number
		devices  int  // devices the number has before
		attempts []string
		want     []error
	}{
		{name: "no code was issued", noCode: true, attempts: []string{right}, want: []error{ErrNoCode}},
		{name: "the right code registers", attempts: []string{right}, want: []error{nil}},
		{name: "a code is spent once", attempts: []string{right, right}, want: []error{nil, ErrNoCode}},
		{name: "a wrong code does not spend it", attempts: []string{wrong, right}, want: []error{ErrBadCode, nil}},
		{name: "one wrong code short of the tries",
			attempts: append(slices.Repeat([]string{wrong}, CodeTries-1), right),
			want:     append(bad[1:], nil)},
		{name: "tries exhausted",
			attempts: append(slices.Repeat([]string{wrong}, CodeTries), right),
			want:     append(bad, ErrNoCode)},
		{name: "one device short of the cap", devices: MaxDevices - 1, attempts: []string{right}, want: []error{nil}},
		{name: "device cap", devices: MaxDevices, attempts: []string{right, right}, want: []error{ErrTooManyDevices, ErrTooManyDevices}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			uid := recipient(i)
			for range tc.devices {
				f.device(uid)
			}
			code := ""
			if !tc.noCode {
				var err error
				if code, _, err = f.svc.Devices().IssueCode(f.ctx, uid, f.clock.Now()); err != nil {
					t.Fatal(err)
				}
			}
			for j, a := range tc.attempts {
				offer := code
				if a == wrong {
					n, _ := strconv.Atoi(code)
					offer = fmt.Sprintf("%08d", (n+1)%100_000_000)
				}
				reg, err := f.svc.Devices().Register(f.ctx, uid, offer, publicKey(), 1, f.clock.Now())
				if !errors.Is(err, tc.want[j]) {
					t.Fatalf("attempt %d (%s code) = %v, want %v", j+1, a, err, tc.want[j])
				}
				if err != nil {
					continue
				}
				// A number's first device is active; later ones wait for approval.
				want := Principal{UID: uid, DeviceID: reg.DeviceID, Pending: tc.devices > 0}
				if p, err := f.svc.Devices().Authenticate(f.ctx, reg.Token, f.clock.Now()); err != nil || p != want || reg.Pending != want.Pending {
					t.Fatalf("the new device (pending %v) authenticates as %v, %v; want %v", reg.Pending, p, err, want)
				}
			}
			registered := int64(tc.devices)
			for _, err := range tc.want {
				if err == nil {
					registered++
				}
			}
			n := f.rdb.HLen(f.ctx, keys.Recipient(uid).Devices()).Val() + f.rdb.HLen(f.ctx, keys.Recipient(uid).PendingDevices()).Val()
			if n != registered {
				t.Fatalf("the number has %d devices, want %d", n, registered)
			}
		})
	}
}

// TestCodeExpires: a code is good for CodeTTL from its issue.
func TestCodeExpires(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	uid := recipient(0)
	code, exp, err := f.svc.Devices().IssueCode(f.ctx, uid, f.clock.Now().Add(-CodeTTL-time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if !exp.Before(time.Now()) {
		t.Fatalf("expiry %v is not in the past", exp)
	}
	if _, err := f.svc.Devices().Register(f.ctx, uid, code, publicKey(), 1, f.clock.Now()); !errors.Is(err, ErrNoCode) {
		t.Fatalf("register with an expired code = %v, want ErrNoCode", err)
	}
}

// TestAuthenticate: a token is its device's, and nothing else passes.
func TestAuthenticate(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	uid := recipient(0)
	code, _, _ := f.svc.Devices().IssueCode(f.ctx, uid, f.clock.Now())
	reg, err := f.svc.Devices().Register(f.ctx, uid, code, publicKey(), 1, f.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	id, token := reg.DeviceID, reg.Token
	other := f.device(recipient(1))
	for _, tok := range []string{
		"",
		"hd_" + uid + "_" + id, // no secret
		token + "x",            // not the secret
		"hd_" + other.UID + "_" + other.DeviceID + token[len(token)-33:], // another device's id
		"hd_" + uid + "_dnothere_" + token[len(token)-32:],               // no such device
	} {
		if p, err := f.svc.Devices().Authenticate(f.ctx, tok, f.clock.Now()); !errors.Is(err, ErrBadToken) {
			t.Errorf("Authenticate(%q) = %v, %v; want ErrBadToken", tok, p, err)
		}
	}
}
