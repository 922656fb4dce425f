package e2e

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bulkhead-io/bulkhead/controlplane/api/v1alpha1"
)

// switchBound is how soon after the CLI returns a mode switch must show on
// an open connection.
const switchBound = time.Second

// observation is one round of the mode switch test's client: when the reply
// to the probe arrived and whether the probe was allowed.
type observation struct {
	at      time.Time
	allowed bool
}

// TestModeSwitchReachesOpenConnections: one connection from cart sends an
// allowed GET and an unlisted probe (DBSIZE, never used in discovery) every
// 20ms while the mode goes protect → monitor → protect. The probe's replies
// show each switch within a second of the CLI's return, no GET fails and
// the connection stays open throughout.
func TestModeSwitchReachesOpenConnections(t *testing.T) {
	needRoot(t)
	ctx := testCtx(t)
	e := newEnv(t, ctx, 4)
	discover(t, ctx, e, discoveryTraffic, discoveryLearned)
	setModeAndWait(t, ctx, e, v1alpha1.ModeProtect)

	c := dialRaw(t, ctx, e.Host("cart"), e.ServerAddr())
	var (
		mu   sync.Mutex
		obs  []observation
		cerr error
	)
	stop := make(chan struct{})
	done := make(chan struct{})
	const interval, maxRounds = 20 * time.Millisecond, 500 // at most 10s
	go func() {
		defer close(done)
		tick := time.NewTicker(interval)
		defer tick.Stop()
		batch := append(command("GET", key), command("DBSIZE")...)
		for range maxRounds {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			o, err := round(c, batch)
			mu.Lock()
			if err != nil {
				cerr = fmt.Errorf("round %d: %w", len(obs)+1, err)
			} else {
				obs = append(obs, o)
			}
			mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	stopClient := sync.OnceFunc(func() {
		close(stop)
		<-done
	})
	defer stopClient()

	// waitFor waits until the client has seen n rounds after index from,
	// the first of which with the probe allowed == allowed is returned.
	waitFor := func(from int, allowed bool, what string) (int, observation) {
		t.Helper()
		var idx = -1
		err := poll(ctx, 5*time.Second, func(context.Context) (bool, error) {
			mu.Lock()
			defer mu.Unlock()
			if cerr != nil {
				return false, cerr
			}
			for i := from; i < len(obs); i++ {
				if obs[i].allowed == allowed {
					idx = i
					return true, nil
				}
			}
			if len(obs) >= maxRounds {
				return false, fmt.Errorf("the client stopped after %d rounds", len(obs))
			}
			return false, nil
		})
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		mu.Lock()
		defer mu.Unlock()
		return idx, obs[idx]
	}
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(obs)
	}

	// Protect: the probe is denied.
	first, _ := waitFor(0, false, "a denied probe under protect")

	from := count()
	returned := setMode(t, ctx, e, v1alpha1.ModeMonitor)
	i, o := waitFor(from, true, "the probe allowed after the switch to monitor")
	if lat := o.at.Sub(returned); lat >= switchBound {
		t.Errorf("protect → monitor reached the open connection %v after the CLI returned, want < %v", lat, switchBound)
	} else {
		t.Logf("protect → monitor reached the open connection %v after the CLI returned", lat)
	}
	// A few rounds under monitor, then back.
	waitRounds(t, ctx, count, i+5)

	from = count()
	returned = setMode(t, ctx, e, v1alpha1.ModeProtect)
	j, o := waitFor(from, false, "the probe denied after the switch to protect")
	if lat := o.at.Sub(returned); lat >= switchBound {
		t.Errorf("monitor → protect reached the open connection %v after the CLI returned, want < %v", lat, switchBound)
	} else {
		t.Logf("monitor → protect reached the open connection %v after the CLI returned", lat)
	}
	waitRounds(t, ctx, count, j+5)

	stopClient()
	mu.Lock()
	defer mu.Unlock()
	if cerr != nil {
		t.Fatalf("the connection failed: %v", cerr)
	}
	// The mode changed exactly twice: denied from first to i-1, allowed
	// from i to j-1, denied from j on.
	var flips []string
	for k := first + 1; k < len(obs); k++ {
		if obs[k].allowed != obs[k-1].allowed {
			flips = append(flips, fmt.Sprintf("round %d: allowed=%v", k, obs[k].allowed))
		}
	}
	if len(flips) != 2 || !strings.HasPrefix(flips[0], fmt.Sprintf("round %d:", i)) || !strings.HasPrefix(flips[1], fmt.Sprintf("round %d:", j)) {
		t.Errorf("the probe's verdict changed %d times, want twice (rounds %d and %d): %v", len(flips), i, j, flips)
	}
	// The connection is still the same and still works.
	rep, err := c.do("GET", key)
	checkReply(t, "GET on the connection after both switches", rep, err, valueRep)
	t.Logf("%d rounds of GET + DBSIZE on one connection, every GET answered", len(obs))
}

// round sends GET and DBSIZE in one write and reads both replies: the GET
// must return the value, the probe is either answered by redis (an
// integer: allowed) or denied by Bulkhead.
func round(c *rawConn, batch []byte) (observation, error) {
	if err := c.send(batch); err != nil {
		return observation{}, fmt.Errorf("send: %w", err)
	}
	rep, err := c.reply()
	if err != nil {
		return observation{}, fmt.Errorf("GET: %w", err)
	}
	if rep != valueRep {
		return observation{}, fmt.Errorf("GET replied %q, want %q", rep, valueRep)
	}
	rep, err = c.reply()
	at := time.Now()
	switch {
	case err != nil:
		return observation{}, fmt.Errorf("DBSIZE: %w", err)
	case strings.HasPrefix(rep, ":"):
		return observation{at: at, allowed: true}, nil
	case isDenied(rep, "dbsize"):
		return observation{at: at, allowed: false}, nil
	}
	return observation{}, fmt.Errorf("DBSIZE replied %q", rep)
}

// waitRounds waits until the client has done n rounds.
func waitRounds(t *testing.T, ctx context.Context, count func() int, n int) {
	t.Helper()
	if err := poll(ctx, 5*time.Second, func(context.Context) (bool, error) { return count() >= n, nil }); err != nil {
		t.Fatalf("the client did not reach %d rounds: %v", n, err)
	}
}
