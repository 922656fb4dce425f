package e2e

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bulkhead-io/bulkhead/controlplane/api/v1alpha1"
)

// TestEvasion: ways of hiding a denied command from a naive matcher do not
// work, and none of them breaks the connection for what is allowed.
// Discovery here also teaches HELLO (cart ran `HELLO 3` once), so that
// RESP3 connections can be checked too; an unlearned HELLO being denied is
// checked by TestProtect.
func TestEvasion(t *testing.T) {
	needRoot(t)
	ctx := testCtx(t)
	e := newEnv(t, ctx, 5)
	traffic := append(slices.Clone(discoveryTraffic), []string{"HELLO", "3"})
	learned := []string{"del", "expire", "get", "hello", "incr", "set"}
	discover(t, ctx, e, traffic, learned)
	setModeAndWait(t, ctx, e, v1alpha1.ModeProtect)
	cart := e.Host("cart")

	t.Run("one byte per segment", func(t *testing.T) {
		c := dialRaw(t, ctx, cart, e.ServerAddr())
		if err := c.sendBytewise(command("FLUSHALL"), 2*time.Millisecond); err != nil {
			t.Fatal(err)
		}
		rep, err := c.reply()
		checkDenied(t, "FLUSHALL sent a byte at a time", rep, err, "flushall")
		// The allowed command after it, a byte at a time too.
		if err := c.sendBytewise(command("GET", key), 2*time.Millisecond); err != nil {
			t.Fatal(err)
		}
		rep, err = c.reply()
		checkReply(t, "GET after it", rep, err, valueRep)
	})

	t.Run("pipelined in one write", func(t *testing.T) {
		c := dialRaw(t, ctx, cart, e.ServerAddr())
		batch := slices.Concat(command("GET", key), command("FLUSHALL"), command("GET", "cart:none"))
		if err := c.send(batch); err != nil {
			t.Fatal(err)
		}
		rep, err := c.reply()
		checkReply(t, "first reply (GET "+key+")", rep, err, valueRep)
		rep, err = c.reply()
		checkDenied(t, "second reply (FLUSHALL)", rep, err, "flushall")
		rep, err = c.reply()
		checkReply(t, "third reply (GET cart:none)", rep, err, nilRep)
		if err := c.silent(200 * time.Millisecond); err != nil {
			t.Errorf("after the three replies: %v", err)
		}
		// A denial first in a pipeline, then two allowed commands.
		if err := c.send(slices.Concat(command("FLUSHALL"), command("GET", key), command("INCR", "cart:visits"))); err != nil {
			t.Fatal(err)
		}
		rep, err = c.reply()
		checkDenied(t, "FLUSHALL first in a pipeline", rep, err, "flushall")
		rep, err = c.reply()
		checkReply(t, "GET after it", rep, err, valueRep)
		rep, err = c.reply()
		if err != nil || !strings.HasPrefix(rep, ":") {
			t.Errorf("INCR after it: %q, %v; want an integer", rep, err)
		}
	})

	t.Run("mixed case", func(t *testing.T) {
		c := dialRaw(t, ctx, cart, e.ServerAddr())
		rep, err := c.do("fLuShAlL")
		checkDenied(t, "fLuShAlL", rep, err, "flushall")
		rep, err = c.do("gEt", key)
		checkReply(t, "gEt (allowed whatever its case)", rep, err, valueRep)
	})

	t.Run("inline command", func(t *testing.T) {
		c := dialRaw(t, ctx, cart, e.ServerAddr())
		if err := c.send([]byte("FLUSHALL\r\n")); err != nil {
			t.Fatal(err)
		}
		rep, err := c.reply()
		checkDenied(t, "inline FLUSHALL", rep, err, "flushall")
		if err := c.send([]byte("flushall async\n")); err != nil {
			t.Fatal(err)
		}
		rep, err = c.reply()
		checkDenied(t, "inline flushall async (LF only)", rep, err, "flushall")
		if err := c.send([]byte("GET " + key + "\r\n")); err != nil {
			t.Fatal(err)
		}
		rep, err = c.reply()
		checkReply(t, "inline GET", rep, err, valueRep)
	})

	t.Run("RESP3 after HELLO 3", func(t *testing.T) {
		c := dialRaw(t, ctx, cart, e.ServerAddr())
		rep, err := c.do("HELLO", "3")
		if err != nil || !strings.HasPrefix(rep, "%") || !strings.Contains(rep, "proto\r\n:3\r\n") {
			t.Fatalf("HELLO 3 (learned): %q, %v; want redis's RESP3 map", rep, err)
		}
		// RESP3 null and the denial, pipelined: replies stay in order.
		if err := c.send(slices.Concat(command("GET", "cart:none"), command("FLUSHALL"), command("GET", key))); err != nil {
			t.Fatal(err)
		}
		rep, err = c.reply()
		checkReply(t, "GET cart:none in RESP3", rep, err, null3)
		rep, err = c.reply()
		checkDenied(t, "FLUSHALL in RESP3", rep, err, "flushall")
		rep, err = c.reply()
		checkReply(t, "GET in RESP3", rep, err, valueRep)
	})

	// Nothing above reached redis: the key is still there.
	out, err := e.RedisCLI(ctx, "cart", "", "GET", key)
	if err != nil || strings.TrimSpace(out) != value {
		t.Errorf("GET %s after the evasions = %q, %v; want %q (did a FLUSHALL pass?)", key, out, err, value)
	}
}
