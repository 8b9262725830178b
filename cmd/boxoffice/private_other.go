//go:build !unix

package main

// keepFilesPrivate does nothing where there is no umask; privateTree still narrows the modes of
// what exists at start.
func keepFilesPrivate() {}
