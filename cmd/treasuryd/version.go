package main

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"
)

func init() {
	if version == "" {
		version = buildVersion()
	}
}

// buildVersion is the module version from the build info: a tag such as
// v1.4.0 for `go install treasuryd@v1.4.0`, a pseudo-version or "(devel)"
// for a build from a checkout; "unknown" without build info.
func buildVersion() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok || bi.Main.Version == "" {
		return "unknown"
	}
	return bi.Main.Version
}

// versionLine is what `treasuryd version` prints: version, VCS revision
// (with "+dirty" for a modified tree) and time when the build stamped them,
// and the Go version.
func versionLine() string {
	var rev, at string
	dirty := false
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.time":
				at = s.Value
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "treasuryd %s", version)
	if rev != "" {
		if dirty {
			rev += "+dirty"
		}
		fmt.Fprintf(&b, " commit %s", rev)
		if at != "" {
			fmt.Fprintf(&b, " (%s)", at)
		}
	} else {
		b.WriteString(" commit unknown")
	}
	fmt.Fprintf(&b, " %s %s/%s", runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return b.String()
}
