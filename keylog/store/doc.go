// Package store keeps Herald's key log (package keylog) in Redis, shared by every
// gateway: Log appends events, signs checkpoints, and gives the inclusion and
// consistency proofs and the leaves that devices and auditors check.
//
// # Layout
//
// Everything is on the slot of the hash tag {kl} (internal/keys):
//
//	hr:{kl}:leaves   list    leaf i (keylog.Encode) at index i
//	hr:{kl}:size     string  the tree size: how many leaves have every tree node stored
//	hr:{kl}:n:L:B    string  block B of level L of the tree, 32-byte hashes end to end:
//	                         node i of level L at offset 32·(i mod 65536) of block i/65536
//
// Every node of the tree is stored, leaf hashes as level 0: 2n hashes, 64 bytes per
// leaf beside the leaf itself (about 100 bytes for an X25519 key, 1.3 KB for an
// ML-KEM one). An inclusion or consistency proof is then at most 2·log₂ n stored
// nodes, read with GETRANGE in one pipeline together with the size (one round trip);
// recomputing nodes from leaf hashes would read all n of them per proof. A level is
// one string read by offset, rather than a hash field per node, because a field costs
// Redis about three times the 32 bytes it holds; blocks keep each string at 2 MiB,
// far below Redis's 512 MiB limit.
//
// # Appending: two steps
//
// Redis's Lua has no SHA-256, so the tree's inner nodes are hashed in Go. An Append
// is:
//
//  1. append.lua pushes the leaf and stores its hash as node (0, i), i being its list
//     index, and answers i together with the state: the tree size, the compact range
//     of the tree (the roots of its perfect subtrees, one per 1 bit of the size), and
//     the hashes of the leaves pushed but not yet in the tree. One script: every
//     leaf gets its own consecutive index, whatever the number of gateways appending,
//     and the sequence cannot fork.
//  2. The gateway computes the inner nodes those leaves complete
//     (transparency-dev/merkle's compact ranges) and integrate.lua stores them and
//     raises the size to cover them, unless it is larger already.
//
// Every node is a function of the leaf hashes before it, which never change: two
// gateways integrating the same leaves at once write the same bytes, and the size only
// grows. Because integrate.lua stores the nodes with the size that covers them, every
// node of the tree of the stored size is stored — what proofs and checkpoints read.
// A compare-and-set of the whole tree would instead make concurrent appends retry.
//
// A gateway that dies between the steps leaves its leaf pushed and outside the tree:
// the next Append or Checkpoint of any gateway integrates every pending leaf (in
// rounds of 1024), so the tree catches up by itself. Its caller saw an error, and the
// leaf may be in the log: an Append error leaves the outcome unknown.
//
// # Costs
//
// Round trips, held by TestRoundTrips: Append 2 (more only when it has more than 1024
// pending leaves to integrate); Checkpoint 1, plus 1 per integration round when
// leaves are pending; InclusionProof, ConsistencyProof, Leaf and Leaves 1. A
// checkpoint is signed again only when the tree changed. One slot holds the whole log:
// key events come at the pace of device registrations, far below what one Redis node
// serves.
package store
