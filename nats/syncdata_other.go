//go:build !linux

package nats

import "os"

// syncData makes the data of files durable: an fsync each, where syncfs(2) is missing.
func syncData(_ string, files []*os.File) error {
	for _, f := range files {
		if err := f.Sync(); err != nil {
			return err
		}
	}
	return nil
}
