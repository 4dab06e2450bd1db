package keylog_test

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/heraldhq/herald/keylog"
	"golang.org/x/mod/sumdb/note"
)

const origin = "herald.test/keylog"

func newKey(t *testing.T, name string) (*keylog.Signer, string) {
	t.Helper()
	skey, vkey, err := keylog.GenerateKey(name)
	if err != nil {
		t.Fatal(err)
	}
	s, err := keylog.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	return s, vkey
}

func newVerifier(t *testing.T, vkey string, last []byte) *keylog.Verifier {
	t.Helper()
	v, err := keylog.NewVerifier(vkey, last)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// history is n leaves, each a device event; leaf k differs when fork is set.
func history(t *testing.T, n, fork int) [][]byte {
	t.Helper()
	leaves := make([][]byte, n)
	for i := range leaves {
		e := deviceEvent(keylog.DeviceKeyAdded)
		e.ID = fmt.Sprintf("dev_%d", i)
		if i == fork {
			e.PublicKey = bytes.Repeat([]byte{0xee}, 32) // the operator's key
		}
		leaf, err := keylog.Encode(e)
		if err != nil {
			t.Fatal(err)
		}
		leaves[i] = leaf
	}
	return leaves
}

func sign(t *testing.T, s *keylog.Signer, leaves [][]byte) keylog.Signed {
	t.Helper()
	c, err := s.Sign(uint64(len(leaves)), mth(leaves))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestVerifyInclusion(t *testing.T) {
	t.Parallel()
	s, vkey := newKey(t, origin)
	v := newVerifier(t, vkey, nil)
	leaves := history(t, 40, -1)
	for n := 1; n <= len(leaves); n++ {
		c, err := v.Update(sign(t, s, leaves[:n]).Note, consistency(n-1, leaves[:n]))
		if err != nil {
			t.Fatalf("size %d: Update: %v", n, err)
		}
		for i := range n {
			p := path(i, leaves[:n])
			e, err := v.VerifyInclusion(c, uint64(i), leaves[i], p)
			if err != nil {
				t.Fatalf("size %d, leaf %d: %v", n, i, err)
			}
			if want := fmt.Sprintf("dev_%d", i); e.ID != want {
				t.Fatalf("size %d, leaf %d: event %v, want device %s", n, i, e, want)
			}
			refuse := func(what string, index uint64, leaf []byte, p [][]byte) {
				t.Helper()
				if _, err := v.VerifyInclusion(c, index, leaf, p); !errors.Is(err, keylog.ErrNotIncluded) {
					t.Fatalf("size %d, leaf %d, %s: %v, want ErrNotIncluded", n, i, what, err)
				}
			}
			changed := bytes.Clone(leaves[i])
			changed[len(changed)-1] ^= 1
			refuse("changed leaf", uint64(i), changed, p)
			refuse("index beyond the tree", uint64(n), leaves[i], p)
			if n > 1 {
				refuse("another leaf", uint64(i), leaves[(i+1)%n], p)
				refuse("short proof", uint64(i), leaves[i], p[1:])
				bent := bytes.Clone(p[len(p)-1])
				bent[0] ^= 1
				refuse("changed proof", uint64(i), leaves[i], append(p[:len(p)-1:len(p)-1], bent))
			}
		}
	}
}

func TestUpdateConsistency(t *testing.T) {
	t.Parallel()
	s, vkey := newKey(t, origin)
	leaves := history(t, 24, -1)
	for m := 0; m <= len(leaves); m++ {
		for n := m; n <= len(leaves); n++ {
			old, cur := sign(t, s, leaves[:m]), sign(t, s, leaves[:n])
			p := consistency(m, leaves[:n])
			v := newVerifier(t, vkey, old.Note)
			if _, err := v.Update(cur.Note, p); err != nil {
				t.Fatalf("%d -> %d: %v", m, n, err)
			}
			// The smaller one is still accepted, with the same proof, and the newest
			// stays the newest.
			if _, err := v.Update(old.Note, p); err != nil {
				t.Fatalf("%d after %d: %v", m, n, err)
			}
			if last, _ := v.Last(); last.Size != uint64(n) || !bytes.Equal(last.Note, cur.Note) {
				t.Fatalf("%d, %d: last is size %d, want %d", m, n, last.Size, n)
			}
		}
	}
}

func TestUpdateRefusesAForkedHistory(t *testing.T) {
	t.Parallel()
	s, vkey := newKey(t, origin)
	honest := history(t, 20, -1)
	for _, k := range []int{0, 5, 11, 19} {
		forked := history(t, 20, k)
		for _, sizes := range [][2]int{{20, 20}, {k + 1, 20}, {12, 20}, {20, 12}, {20, k + 1}} {
			m, n := sizes[0], sizes[1]
			seen := sign(t, s, honest[:m])
			shown := sign(t, s, forked[:n])
			forkedOrNot := k < min(m, n)
			var p [][]byte
			if m <= n {
				p = consistency(m, forked[:n]) // the best the forked log can offer
			} else {
				p = consistency(n, honest[:m])
			}
			v := newVerifier(t, vkey, seen.Note)
			_, err := v.Update(shown.Note, p)
			if !forkedOrNot {
				if err != nil {
					t.Errorf("fork at %d, sizes %d then %d: the histories agree up to %d, yet %v", k, m, n, min(m, n), err)
				}
				continue
			}
			var ce *keylog.ConsistencyError
			if !errors.Is(err, keylog.ErrInconsistent) || !errors.As(err, &ce) {
				t.Fatalf("fork at %d, sizes %d then %d: %v, want ErrInconsistent", k, m, n, err)
			}
			if !bytes.Equal(ce.Seen, seen.Note) || !bytes.Equal(ce.Shown, shown.Note) {
				t.Errorf("fork at %d: the evidence is not the two notes", k)
			}
			if last, _ := v.Last(); !bytes.Equal(last.Note, seen.Note) {
				t.Errorf("fork at %d: the verifier moved to the refused checkpoint", k)
			}
		}
	}
}

func TestUpdateTakesTheFirstOnTrust(t *testing.T) {
	t.Parallel()
	s, vkey := newKey(t, origin)
	v := newVerifier(t, vkey, nil)
	if _, ok := v.Last(); ok {
		t.Fatal("a new verifier has a last checkpoint")
	}
	first := sign(t, s, history(t, 7, -1))
	if _, err := v.Update(first.Note, nil); err != nil {
		t.Fatal(err)
	}
	last, ok := v.Last()
	if !ok || !bytes.Equal(last.Note, first.Note) || last.Size != 7 {
		t.Fatalf("Last = %v, %v", last, ok)
	}
	// Kept and restored, it still guards against a fork.
	again := newVerifier(t, vkey, last.Note)
	if _, err := again.Update(sign(t, s, history(t, 7, 3)).Note, nil); !errors.Is(err, keylog.ErrInconsistent) {
		t.Fatalf("restored verifier: %v, want ErrInconsistent", err)
	}
}

func TestOpenRefusesWhatTheLogDidNotSign(t *testing.T) {
	t.Parallel()
	skey, vkey, err := keylog.GenerateKey(origin)
	if err != nil {
		t.Fatal(err)
	}
	s, _ := keylog.NewSigner(skey)
	impostor, _ := newKey(t, origin) // same name, another key
	other, _ := newKey(t, "other.test/keylog")
	leaves := history(t, 5, -1)
	good := sign(t, s, leaves).Note
	v := newVerifier(t, vkey, nil)
	if c, err := v.Open(good); err != nil || c.Size != 5 || c.Origin != origin || !bytes.Equal(c.Root, mth(leaves)) {
		t.Fatalf("Open(good) = %+v, %v", c, err)
	}

	text, sigs, _ := strings.Cut(string(good), "\n\n")
	bad := map[string]struct {
		note string
		want error
	}{
		"another key":          {string(sign(t, impostor, leaves).Note), keylog.ErrBadSignature},
		"another log":          {string(sign(t, other, leaves).Note), keylog.ErrBadSignature},
		"size changed":         {strings.Replace(string(good), "\n5\n", "\n6\n", 1), keylog.ErrBadSignature},
		"signature bit":        {text + "\n\n" + flipBase64(sigs), keylog.ErrBadSignature},
		"no signature":         {text + "\n\n", keylog.ErrMalformed},
		"no blank line":        {text + "\n" + sigs, keylog.ErrMalformed},
		"no final newline":     {strings.TrimSuffix(string(good), "\n"), keylog.ErrMalformed},
		"hyphen for em dash":   {text + "\n\n- " + strings.TrimPrefix(sigs, "\u2014 "), keylog.ErrMalformed},
		"garbage signature":    {text + "\n\n\u2014 " + origin + " !!!\n", keylog.ErrMalformed},
		"leading zero in size": {resign(t, skey, origin+"\n05\n"), keylog.ErrMalformed},
		"extension line":       {resign(t, skey, strings.TrimSuffix(text, "\n")+"\nextra\n"), keylog.ErrMalformed},
	}
	for name, c := range bad {
		if _, err := v.Open([]byte(c.note)); !errors.Is(err, c.want) {
			t.Errorf("%s: Open error %v, want %v", name, err, c.want)
		}
		if _, err := v.Update([]byte(c.note), nil); !errors.Is(err, c.want) {
			t.Errorf("%s: Update error %v, want %v", name, err, c.want)
		}
	}
	if _, ok := v.Last(); ok {
		t.Error("a refused checkpoint became the last one")
	}
}

// TestOpenIgnoresCosignatures: a witness adds its signature line to the log's note;
// the verifier, which has no key for the witness, checks the log's and skips the rest.
func TestOpenIgnoresCosignatures(t *testing.T) {
	t.Parallel()
	s, vkey := newKey(t, origin)
	witness, _ := newKey(t, "witness.test")
	good := sign(t, s, history(t, 3, -1)).Note
	text, sigs, _ := strings.Cut(string(good), "\n\n")
	_, witnessSig, _ := strings.Cut(string(sign(t, witness, history(t, 3, -1)).Note), "\n\n")
	v := newVerifier(t, vkey, nil)
	for _, n := range []string{text + "\n\n" + sigs + witnessSig, text + "\n\n" + witnessSig + sigs} {
		if _, err := v.Open([]byte(n)); err != nil {
			t.Errorf("cosigned note %q: %v", n, err)
		}
	}
}

func TestKeyTexts(t *testing.T) {
	t.Parallel()
	skey, vkey, err := keylog.GenerateKey(origin)
	if err != nil {
		t.Fatal(err)
	}
	s, err := keylog.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	if s.VerifierKey() != vkey || s.Name() != origin {
		t.Errorf("signer says %s, %s; GenerateKey said %s", s.Name(), s.VerifierKey(), vkey)
	}
	for _, name := range []string{"", "a b", "a+b", "caf\u00e9"} {
		if _, _, err := keylog.GenerateKey(name); !errors.Is(err, keylog.ErrMalformed) {
			t.Errorf("GenerateKey(%q): %v, want ErrMalformed", name, err)
		}
	}
	_, vkey2, _ := keylog.GenerateKey(origin)
	f := strings.SplitN(vkey, "+", 3)
	f2 := strings.SplitN(vkey2, "+", 3)
	for name, k := range map[string]string{
		"no hash":              f[0] + "+" + f[2],
		"hash of another key":  f[0] + "+" + f2[1] + "+" + f[2],
		"key renamed":          "other+" + f[1] + "+" + f[2],
		"short hash":           f[0] + "+" + f[1][1:] + "+" + f[2],
		"not base64":           f[0] + "+" + f[1] + "+" + f[2][:len(f[2])-2] + "!!",
		"signer key":           skey,
		"algorithm byte not 1": f[0] + "+" + f[1] + "+" + "Ag" + f[2][2:],
	} {
		if _, err := keylog.NewVerifier(k, nil); !errors.Is(err, keylog.ErrMalformed) {
			t.Errorf("NewVerifier(%s): %v, want ErrMalformed", name, err)
		}
	}
	for name, k := range map[string]string{
		"verifier key":   vkey,
		"no PRIVATE+KEY": strings.TrimPrefix(skey, "PRIVATE+KEY+"),
		"hash changed":   strings.Replace(skey, f[1], f2[1], 1),
	} {
		if _, err := keylog.NewSigner(k); !errors.Is(err, keylog.ErrMalformed) {
			t.Errorf("NewSigner(%s): %v, want ErrMalformed", name, err)
		}
	}
}

// TestNotesAreSumdbNotes: the checkpoints and key texts are those of Go's checksum
// database, so its note package (and the witnesses that speak it) read them as they
// are, and it writes the very same bytes.
func TestNotesAreSumdbNotes(t *testing.T) {
	t.Parallel()
	skey, vkey, err := keylog.GenerateKey(origin)
	if err != nil {
		t.Fatal(err)
	}
	s, _ := keylog.NewSigner(skey)
	ours := sign(t, s, history(t, 9, -1))

	nv, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	n, err := note.Open(ours.Note, note.VerifierList(nv))
	if err != nil {
		t.Fatalf("note.Open: %v", err)
	}
	ns, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	theirs, err := note.Sign(&note.Note{Text: n.Text}, ns)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(theirs, ours.Note) {
		t.Errorf("note.Sign wrote\n%s\nwe wrote\n%s", theirs, ours.Note)
	}
	if _, err := newVerifier(t, vkey, nil).Open(theirs); err != nil {
		t.Errorf("Open(note.Sign's note): %v", err)
	}
}

// resign signs text, whatever it is, with the log key skey, as a buggy or hostile
// log could.
func resign(t *testing.T, skey, text string) string {
	t.Helper()
	ns, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	b, err := note.Sign(&note.Note{Text: text}, ns)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func flipBase64(sigs string) string {
	b := []byte(sigs)
	i := len(b) - 10
	if b[i] == 'A' {
		b[i] = 'B'
	} else {
		b[i] = 'A'
	}
	return string(b)
}

// BenchmarkVerifyInclusion10k: what a device spends on one key of a lookup.
func BenchmarkVerifyInclusion10k(b *testing.B) {
	skey, vkey, _ := keylog.GenerateKey(origin)
	s, _ := keylog.NewSigner(skey)
	v, _ := keylog.NewVerifier(vkey, nil)
	const n = 10_000
	leaves := make([][]byte, n)
	for i := range leaves {
		e := deviceEvent(keylog.DeviceKeyAdded)
		e.ID = fmt.Sprintf("dev_%d", i)
		leaves[i], _ = keylog.Encode(e)
	}
	signed, _ := s.Sign(n, mth(leaves))
	c, err := v.Update(signed.Note, nil)
	if err != nil {
		b.Fatal(err)
	}
	const i = 6_789
	p := path(i, leaves)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, err := v.VerifyInclusion(c, i, leaves[i], p); err != nil {
			b.Fatal(err)
		}
	}
}
