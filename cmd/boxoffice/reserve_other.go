//go:build !linux

package main

import "errors"

// freeBytes is unknown here; reporting no room keeps the reserve from being made.
func freeBytes(string) (uint64, bool) { return 0, true }

// allocate is unsupported here: no reserve, and a full disk keeps the server from starting.
func allocate(string, int64) error {
	return errors.New("no disk-space reserve on this system")
}
