package main

import "testing"

func TestByteSizeFlag(t *testing.T) {
	for in, want := range map[string]int64{
		"0": 0, "134217728": 128 << 20, "128MiB": 128 << 20, "1GiB": 1 << 30, "512KiB": 512 << 10, "64B": 64, " 2 GiB ": 2 << 30,
	} {
		var b byteSize
		if err := b.Set(in); err != nil || int64(b) != want {
			t.Errorf("Set(%q) = %d, %v; want %d", in, b, err, want)
		}
		var again byteSize
		if err := again.Set(b.String()); err != nil || again != b {
			t.Errorf("Set(String()) of %q = %d, %v; want %d", in, again, err, b)
		}
	}
	for _, in := range []string{"", "-1", "1.5GiB", "12MB", "MiB", "99999999999GiB"} {
		var b byteSize
		if err := b.Set(in); err == nil {
			t.Errorf("Set(%q) = %d, want an error", in, b)
		}
	}
}
