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
// counted, and after CodeTries of them the number takes no code; a number holds at
// most MaxDevices devices.
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
			want:     append(bad, ErrCodeLocked)},
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

// TestCodeTriesSurviveReissue: the wrong codes a number was offered count across the
// codes issued for it, so issuing a new code gives a guesser no new tries, and a
// number has at most CodeIssues codes per window.
func TestCodeTriesSurviveReissue(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	uid := recipient(0)
	devs := f.svc.Devices()
	wrong := func(code string) string {
		n, _ := strconv.Atoi(code)
		return fmt.Sprintf("%08d", (n+1)%100_000_000)
	}
	var code string
	for i := range CodeTries {
		// A new code before each guess: before the fix, each one came with CodeTries
		// fresh tries.
		var err error
		if code, _, err = devs.IssueCode(f.ctx, uid, f.clock.Now()); err != nil {
			t.Fatalf("issue %d: %v", i+1, err)
		}
		_, err = devs.Register(f.ctx, uid, wrong(code), publicKey(), 1, f.clock.Now())
		var bad *BadCodeError
		if !errors.As(err, &bad) || bad.Left != CodeTries-i-1 {
			t.Fatalf("wrong code %d = %v; want ErrBadCode with %d left", i+1, err, CodeTries-i-1)
		}
	}
	// The right code of a code issued before the tries ran out is refused too, with
	// the wait until the window ends.
	var wait *WaitError
	if _, err := devs.Register(f.ctx, uid, code, publicKey(), 1, f.clock.Now()); !errors.Is(err, ErrCodeLocked) ||
		!errors.As(err, &wait) || wait.Wait <= 0 || wait.Wait > CodeWindow {
		t.Fatalf("the right code after %d wrong ones = %v; want ErrCodeLocked with a wait", CodeTries, err)
	}
	if _, _, err := devs.IssueCode(f.ctx, uid, f.clock.Now()); !errors.Is(err, ErrTooManyCodes) {
		t.Fatalf("code %d in the window = %v; want ErrTooManyCodes", CodeIssues+1, err)
	}
	// Another number is not affected.
	if _, _, err := devs.IssueCode(f.ctx, recipient(1), f.clock.Now()); err != nil {
		t.Fatal(err)
	}
}
