package main

import "runtime/debug"

// scalesetVersion is the version of github.com/actions/scaleset linked into this binary.
func scalesetVersion() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	for _, d := range bi.Deps {
		if d.Path == "github.com/actions/scaleset" {
			return d.Version
		}
	}
	return "unknown"
}
