//go:build unix

package main

import "syscall"

// keepFilesPrivate makes every file and directory the process creates from now on readable by
// its owner only (umask 077), whatever the umask it was started with: the data dir holds the
// store (buyers' addresses, key hashes), the payment ledger, receipts and the admin key.
func keepFilesPrivate() { syscall.Umask(0o077) }
