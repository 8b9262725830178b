package nats

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// TestWriteFilesAtomic writes a batch of mail files, then the same names again with other bytes
// (a receipt written before a crash and written again on its redelivery): each name ends up
// holding its last bytes, in full, with no temp file left in the directory and no other name.
func TestWriteFilesAtomic(t *testing.T) {
	dir := t.TempDir()
	batch := func(version string) []mailFile {
		var files []mailFile
		for i := range 5 {
			files = append(files, mailFile{path: filepath.Join(dir, fmt.Sprintf("evt_%d.eml", i)), data: fmt.Appendf(nil, "receipt %d, %s", i, version)})
		}
		return files
	}
	for _, version := range []string{"first", "second"} {
		for i, err := range writeFilesAtomic(dir, batch(version)) {
			if err != nil {
				t.Fatalf("%s write of file %d: %v", version, i, err)
			}
		}
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		if len(entries) != 5 {
			t.Fatalf("after the %s write the directory holds %d entries, want the 5 files: %v", version, len(entries), entries)
		}
		for i, f := range batch(version) {
			got, err := os.ReadFile(f.path)
			if err != nil || string(got) != string(f.data) {
				t.Fatalf("file %d after the %s write = %q, %v; want %q", i, version, got, err, f.data)
			}
			if st, err := os.Stat(f.path); err != nil || st.Mode().Perm() != 0o600 {
				t.Fatalf("file %d mode %v (%v), want 0600", i, st.Mode(), err)
			}
		}
	}
	// One file alone takes the same path (writeFileAtomic).
	one := filepath.Join(dir, "evt_0.eml")
	if err := writeFileAtomic(one, []byte("third")); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(one); string(got) != "third" {
		t.Fatalf("single write left %q", got)
	}
}
