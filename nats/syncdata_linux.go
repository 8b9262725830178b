package nats

import (
	"os"

	"golang.org/x/sys/unix"
)

// syncData makes the data of files, all open under dir, durable. One file is fsync'd; more are
// synced with one syncfs(2) of dir's file system, which costs about one fsync however many files
// it covers (and reports their write-back errors, since Linux 5.8).
func syncData(dir string, files []*os.File) error {
	if len(files) == 1 {
		return files[0].Sync()
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return unix.Syncfs(int(d.Fd()))
}
