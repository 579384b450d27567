// Package crds only pins module versions; see go.mod.
package crds
