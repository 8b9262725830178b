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

// newTemp creates the file a mail file's data is written to before it gets its name.
func newTemp(dir string) (*tempFile, error) { return newNamedTemp(dir) }

// place gives t the name path, over any file there.
func (t *tempFile) place(path string, _ []byte) error { return t.placeNamed(path) }
