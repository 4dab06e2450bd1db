// Package version says which build of Herald a binary is, from what the Go toolchain
// records in every binary it builds: the module version (a tag, when built with
// `go install …@version`; "(devel)" from a clone), the commit, its time, and whether
// the tree had changes not committed. No build step has to remember to set it.
package version

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"
)

// String is program's version line, for --version:
//
//	heraldd v1.4.0 go1.26.8 linux/amd64
//	heraldd v1.4.1-0.20261120100405-2d32261a0c1e modified go1.26.8 linux/amd64
//	heraldd (devel) commit 2d32261a0c1e 2026-11-20T10:04:05Z go1.26.8 linux/amd64
func String(program string) string {
	info, _ := debug.ReadBuildInfo() // nil when there is none
	return format(program, info)
}

// format is String for the build information info (nil when there is none).
func format(program string, info *debug.BuildInfo) string {
	words := []string{program}
	if info == nil {
		words = append(words, "(unknown: built without module support)")
	} else {
		v := info.Main.Version
		if v == "" {
			v = "(devel)"
		}
		words = append(words, v)
		var commit, at, modified string
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				commit = s.Value
			case "vcs.time":
				at = s.Value
			case "vcs.modified":
				if s.Value == "true" {
					modified = "modified"
				}
			}
		}
		commit = commit[:min(12, len(commit))]
		// A pseudo-version (v0.0.0-20261120100405-2d32261a0c1e, with +dirty for a
		// modified tree) names the commit and its time already.
		if commit != "" && !strings.HasSuffix(strings.TrimSuffix(v, "+dirty"), "-"+commit) {
			words = append(words, "commit", commit)
			if at != "" {
				words = append(words, at)
			}
		}
		if modified != "" {
			words = append(words, modified)
		}
	}
	return strings.Join(append(words, runtime.Version(), fmt.Sprintf("%s/%s", runtime.GOOS, runtime.GOARCH)), " ")
}
