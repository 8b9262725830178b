package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
)

// reserveSize is the space the server keeps in its data dir as a file of its own: a server
// whose disk is full cannot even open its SQLite store (its shared-memory file cannot grow), so
// it could serve neither reads nor the orders a crash left pending. With the reserve it frees
// that much and starts degraded — saying so — instead of refusing to start.
const reserveSize = 16 << 20

// reserveName is the reserve's file in the data dir.
const reserveName = "reserve"

// keepReserve makes the reserve file when it is missing and the disk has room for it and more.
// A failure is logged and otherwise ignored: the reserve is a help, not a need.
func keepReserve(dir string, log *slog.Logger) {
	path := filepath.Join(dir, reserveName)
	if _, err := os.Stat(path); err == nil {
		return
	}
	if free, ok := freeBytes(dir); ok && free < 2*reserveSize {
		return // a small or nearly full disk: keep what room there is for the store itself
	}
	if err := allocate(path, reserveSize); err != nil {
		_ = os.Remove(path)
		log.Warn("could not set the disk-space reserve aside", "path", path, "err", err)
	}
}

// openReleasing opens the store; when that fails, the store is on the data dir's disk (local,
// SQLite) and a reserve is there, it frees the reserve and tries once more, logging loudly that
// the server runs on the reserve's space.
func openReleasing[T any](dir string, local bool, log *slog.Logger, open func() (T, error)) (T, error) {
	v, err := open()
	if err == nil || !local {
		return v, err
	}
	path := filepath.Join(dir, reserveName)
	if rmErr := os.Remove(path); rmErr != nil {
		if !errors.Is(rmErr, os.ErrNotExist) {
			log.Warn("could not free the disk-space reserve", "path", path, "err", rmErr)
		}
		return v, err
	}
	log.Error(fmt.Sprintf("the store did not open (%v); freed the %d MiB disk-space reserve and trying again: if the disk is full, "+
		"the server runs on that space only — free disk space now (the reserve is set aside again at the next start)", err, reserveSize>>20))
	return open()
}
