package nats

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"

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

// newTemp creates the file a mail file's data is written to before it gets its name: an unnamed
// file in dir (O_TMPFILE), or a named temp file where the file system has no unnamed ones (an
// NFS directory several servers share). In a mail directory of many thousands of receipts, each
// directory entry made or removed cost tens of microseconds of the kernel's CPU, and a named temp
// file takes three (the temp's, its removal by the rename, the receipt's): the email consumer's
// file writing was 15% of the server's CPU in a sale's profile. An unnamed file takes one (the
// link), and a crash leaves nothing of it behind. It is opened without the runtime's poller,
// which a regular file has no use for.
func newTemp(dir string) (*tempFile, error) {
	fd, err := unix.Open(dir, unix.O_TMPFILE|unix.O_WRONLY|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return newNamedTemp(dir)
	}
	return &tempFile{f: os.NewFile(uintptr(fd), dir), unnamed: true}, nil
}

// place gives t the name path. An unnamed file is linked there through /proc/self/fd (which
// needs no privilege, unlike AT_EMPTY_PATH); where a file of that name exists already (a receipt
// written before a crash, or by another server) or the link cannot be made, data goes to a named
// temp file renamed over it instead, as a rename replaces and a link does not.
func (t *tempFile) place(path string, data []byte) error {
	if !t.unnamed {
		return t.placeNamed(path)
	}
	err := unix.Linkat(unix.AT_FDCWD, "/proc/self/fd/"+strconv.Itoa(int(t.f.Fd())), unix.AT_FDCWD, path, unix.AT_SYMLINK_FOLLOW)
	closeErr := t.f.Close()
	if err == nil {
		return closeErr
	}
	named, nerr := newNamedTemp(filepath.Dir(path))
	if nerr != nil {
		return errors.Join(err, nerr)
	}
	if _, werr := named.f.Write(data); werr != nil {
		named.discard()
		return werr
	}
	if serr := named.f.Sync(); serr != nil {
		named.discard()
		return serr
	}
	if perr := named.placeNamed(path); perr != nil {
		named.discard()
		return perr
	}
	return nil
}
