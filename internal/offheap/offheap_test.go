package offheap

import (
	"runtime"
	"testing"
)

// TestTablesGoBack: a table is zeroed and writable, Release gives it back once however often it
// is called, and a table nobody releases goes back once unreachable.
func TestTablesGoBack(t *testing.T) {
	if !Mapped() {
		t.Skip("no anonymous mmap here: tables are on the heap")
	}
	base := Outstanding()
	a := New(1 << 16)
	for i, w := range a.Words {
		if w != 0 {
			t.Fatalf("word %d of a new table is %d", i, w)
		}
		a.Words[i] = uint64(i)
	}
	b := New(3)
	if n := Count(); n != base+2 {
		t.Fatalf("%d tables mapped after two, want %d", n, base+2)
	}
	a.Release()
	a.Release()
	if a.Words != nil {
		t.Fatal("a released table still shows its words")
	}
	if n := Count(); n != base+1 {
		t.Fatalf("%d tables mapped after releasing one of two (twice), want %d", n, base+1)
	}
	runtime.KeepAlive(b)
	b = nil
	if n := Outstanding(); n != base {
		t.Fatalf("%d tables mapped once the other is unreachable, want %d", n, base)
	}
	_ = b
}
