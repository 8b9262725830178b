package redis

import (
	"context"
	"testing"

	goredis "github.com/redis/go-redis/v9"

	"boxoffice/redis/redistest"
)

// TestScripts checks the two Lua scripts on a real server: the lock is granted once, with a token
// that grows and never falls below the floor, and release deletes only the caller's own lock.
func TestScripts(t *testing.T) {
	o, err := goredis.ParseURL(redistest.Start(t))
	if err != nil {
		t.Fatal(err)
	}
	c := goredis.NewClient(o)
	defer c.Close()
	ctx := context.Background()
	key, fence := lockKey("gig", "a"), fenceKey("gig", "a")
	acquire := func(value string, floor int64) int64 {
		t.Helper()
		tok, err := acquireScript.Run(ctx, c, []string{key, fence}, value, 60000, floor).Int64()
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	release := func(value string) {
		t.Helper()
		if err := releaseScript.Run(ctx, c, []string{key}, value).Err(); err != nil {
			t.Fatal(err)
		}
	}

	if tok := acquire("one", 0); tok != 1 {
		t.Fatalf("first token %d", tok)
	}
	if tok := acquire("two", 0); tok != 0 {
		t.Fatalf("a held lock was granted again (token %d)", tok)
	}
	release("two") // not the holder: must not delete
	if v, err := c.Get(ctx, key).Result(); err != nil || v != "one" {
		t.Fatalf("another's release deleted the lock: %q %v", v, err)
	}
	release("one")
	if n, _ := c.Exists(ctx, key).Result(); n != 0 {
		t.Fatal("the holder's release left the lock")
	}
	if tok := acquire("two", 0); tok != 2 {
		t.Fatalf("second token %d", tok)
	}
	release("two")
	if tok := acquire("three", 41); tok != 42 {
		t.Fatalf("token below the floor: %d", tok)
	}
	release("three")
	if tok := acquire("four", 5); tok != 43 {
		t.Fatalf("token after the floor: %d", tok)
	}
	if ttl, _ := c.PTTL(ctx, key).Result(); ttl <= 0 {
		t.Fatalf("lock without expiry: %v", ttl)
	}
}
