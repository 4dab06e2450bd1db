package version

import (
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
)

func TestFormat(t *testing.T) {
	t.Parallel()
	tail := " " + runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH
	for _, tc := range []struct {
		name string
		info *debug.BuildInfo
		want string
	}{
		{"go install of a tag", &debug.BuildInfo{Main: debug.Module{Version: "v1.4.0"}}, "heraldd v1.4.0"},
		{"a clone with changes", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "2d32261a0c1e5ad176c166ad30a1b2c3d4e5f607"},
			{Key: "vcs.time", Value: "2026-11-20T10:04:05Z"}, {Key: "vcs.modified", Value: "true"}}},
			"heraldd (devel) commit 2d32261a0c1e 2026-11-20T10:04:05Z modified"},
		{"a clean clone after a tag", &debug.BuildInfo{Main: debug.Module{Version: "v1.4.1-0.20261120100405-2d32261a0c1e"}, Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "2d32261a0c1e5ad176c166ad30a1b2c3d4e5f607"}, {Key: "vcs.modified", Value: "false"}}},
			"heraldd v1.4.1-0.20261120100405-2d32261a0c1e"},
		{"a modified clone after a tag", &debug.BuildInfo{Main: debug.Module{Version: "v1.4.1-0.20261120100405-2d32261a0c1e+dirty"},
			Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "2d32261a0c1e5ad176c166ad30a1b2c3d4e5f607"},
				{Key: "vcs.modified", Value: "true"}}},
			"heraldd v1.4.1-0.20261120100405-2d32261a0c1e+dirty modified"},
		{"a clean clone at a tag", &debug.BuildInfo{Main: debug.Module{Version: "v1.4.0"}, Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "2d32261a0c1e5ad176c166ad30a1b2c3d4e5f607"}, {Key: "vcs.time", Value: "2026-11-20T10:04:05Z"}}},
			"heraldd v1.4.0 commit 2d32261a0c1e 2026-11-20T10:04:05Z"},
		{"no build information", nil, "heraldd (unknown: built without module support)"},
	} {
		if got := format("heraldd", tc.info); got != tc.want+tail {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want+tail)
		}
	}
	if got := String("herald"); !strings.HasPrefix(got, "herald ") || !strings.HasSuffix(got, tail) {
		t.Errorf("String = %q", got)
	}
}
