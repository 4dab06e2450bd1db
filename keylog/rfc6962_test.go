package keylog_test

import (
	"crypto/sha256"
	"math/bits"
)

// The definitions of RFC 6962 §2.1, written out naively and independently of the
// merkle module, as the oracle the tests compare against: mth is MTH, path is PATH
// (the inclusion proof), consistency is PROOF.

func mth(leaves [][]byte) []byte {
	switch n := len(leaves); n {
	case 0:
		h := sha256.Sum256(nil)
		return h[:]
	case 1:
		h := sha256.Sum256(append([]byte{0}, leaves[0]...))
		return h[:]
	default:
		k := split(n)
		return node(mth(leaves[:k]), mth(leaves[k:]))
	}
}

// split is the largest power of two smaller than n.
func split(n int) int { return 1 << (bits.Len(uint(n-1)) - 1) }

func node(l, r []byte) []byte {
	h := sha256.Sum256(append(append([]byte{1}, l...), r...))
	return h[:]
}

func path(m int, leaves [][]byte) [][]byte {
	n := len(leaves)
	if n <= 1 {
		return nil
	}
	k := split(n)
	if m < k {
		return append(path(m, leaves[:k]), mth(leaves[k:]))
	}
	return append(path(m-k, leaves[k:]), mth(leaves[:k]))
}

func consistency(m int, leaves [][]byte) [][]byte {
	if m == 0 || m == len(leaves) {
		return nil
	}
	return subproof(m, leaves, true)
}

func subproof(m int, leaves [][]byte, whole bool) [][]byte {
	n := len(leaves)
	if m == n {
		if whole {
			return nil
		}
		return [][]byte{mth(leaves)}
	}
	k := split(n)
	if m <= k {
		return append(subproof(m, leaves[:k], whole), mth(leaves[k:]))
	}
	return append(subproof(m-k, leaves[k:], false), mth(leaves[:k]))
}
