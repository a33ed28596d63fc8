package tests

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/roomcast/roomcast/tests/testserver"
	"github.com/roomcast/roomcast/tests/yjs"
)

// Big documents (SPEC "Big documents"), driven with the stock y-websocket
// client: a pasted text of 1 MiB or 20 MiB reaches every provider, a late
// joiner and a restart; one over MAX_DOC_BYTES is refused without a
// reconnect loop; the server's memory stays bounded; a reconnect costs
// what is missing, not the document.

const (
	bigDocWait = 90 * time.Second // a 20 MiB paste on a shared, noisy machine
	// bigDocRSSBudget bounds the resident memory of one server while
	// 20 MiB documents are pasted, relayed, stored and sent to joiners.
	bigDocRSSBudget = 600 << 20
)

// textDigest is a provider's text, told by its length and SHA-256.
type textDigest struct {
	Length int
	SHA256 string
}

func (d textDigest) String() string {
	return fmt.Sprintf("%d chars sha256 %.12s", d.Length, d.SHA256)
}

func digestOf(p *yjs.Peers, id string) textDigest {
	r := p.Do("digest", id, map[string]any{"hash": true})
	h, _ := r["sha256"].(string)
	return textDigest{Length: int(r["length"].(float64)), SHA256: h}
}

// paste has provider id insert size bytes of seeded text at the end of
// its text, in one update, and returns the text's digest after it.
func paste(p *yjs.Peers, id string, size int, seed int) textDigest {
	r := p.Do("paste", id, map[string]any{"size": size, "seed": seed})
	return textDigest{Length: int(r["length"].(float64)), SHA256: r["sha256"].(string)}
}

// awaitText waits until provider id's text is want: polled by length (cheap),
// then checked by hash.
func awaitText(t *testing.T, p *yjs.Peers, id string, want textDigest, within time.Duration) {
	t.Helper()
	p.Eventually(within, id+" has the text", func() (bool, string) {
		n := int(p.Do("digest", id, nil)["length"].(float64))
		if n != want.Length {
			return false, fmt.Sprintf("%d chars, want %d", n, want.Length)
		}
		return true, ""
	})
	if got := digestOf(p, id); got != want {
		t.Fatalf("%s has %v, want %v", id, got, want)
	}
}

// rssPeak samples the resident memory of the processes pids every 50 ms
// until stop is called, which returns the highest sample of each.
func rssPeak(pids ...int) (stop func() []int64) {
	peaks := make([]int64, len(pids))
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			for i, pid := range pids {
				peaks[i] = max(peaks[i], vmRSS(pid))
			}
			select {
			case <-done:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	return func() []int64 {
		close(done)
		wg.Wait()
		return peaks
	}
}

// vmRSS is rssBytes for a sampling goroutine: 0 when it cannot be read.
func vmRSS(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

// bigDeployment is where a big document is pasted: the paster's server,
// the one other providers use (another instance on Redis, the same one
// on SQLite), and how to restart them all.
type bigDeployment struct {
	paster, other func() *testserver.Server
	pids          func() []int
	restart       func(t *testing.T)
}

// pasteEverywhere runs one paste of size bytes in room: provider a pastes,
// b (on a's server) and c (on the other) get it, a late joiner d gets it,
// and b, away during a small edit, gets that edit back for far less than
// the document. It returns the document's digest.
func pasteEverywhere(t *testing.T, p *yjs.Peers, dep bigDeployment, room string, size, seed int) textDigest {
	t.Helper()
	id := func(s string) string { return room + "-" + s }
	connectSynced(t, p, id("a"), yjsURL(dep.paster()), room, "alice")
	connectSynced(t, p, id("b"), yjsURL(dep.paster()), room, "bob")
	connectSynced(t, p, id("c"), yjsURL(dep.other()), room, "carol")

	stopRSS := rssPeak(dep.pids()...)
	start := time.Now()
	want := paste(p, id("a"), size, seed)
	pasted := time.Since(start)
	awaitText(t, p, id("c"), want, bigDocWait)
	reachedOther := time.Since(start)
	awaitText(t, p, id("b"), want, bigDocWait)
	reachedAll := time.Since(start)

	start = time.Now()
	connectSyncedWithin(t, p, id("d"), yjsURL(dep.other()), room, "dave", bigDocWait)
	joined := time.Since(start)
	if got := digestOf(p, id("d")); got != want {
		t.Fatalf("the late joiner has %v, want %v", got, want)
	}
	peaks := stopRSS()

	// b goes away, a types a line, b comes back: it gets the line, not
	// the document again.
	p.Do("disconnect", id("b"), nil)
	p.Do("insert", id("a"), map[string]any{"pos": 0, "text": "while bob was away\n"})
	want = digestOf(p, id("a"))
	awaitText(t, p, id("c"), want, bigDocWait)
	mark := p.Mark()
	p.Do("reconnect", id("b"), nil)
	p.AwaitAfter(mark, bigDocWait, id("b")+" synced again", synced(id("b")))
	awaitText(t, p, id("b"), want, bigDocWait)
	tr := p.Do("traffic", id("b"), nil)
	received, sent := int(tr["received"].(float64)), int(tr["sent"].(float64))

	t.Logf("%d MiB paste in %s: pasted in %v, on the other provider after %v, on every provider after %v; late joiner synced in %v; "+
		"a reconnect read %d bytes and wrote %d; server RSS peak %v MiB",
		size>>20, room, pasted.Round(time.Millisecond), reachedOther.Round(time.Millisecond), reachedAll.Round(time.Millisecond),
		joined.Round(time.Millisecond), received, sent, mib(peaks))
	for i, peak := range peaks {
		if peak > bigDocRSSBudget {
			t.Errorf("server %d reached %d MiB resident with a %d MiB document (budget %d MiB)", i, peak>>20, size>>20, bigDocRSSBudget>>20)
		}
	}
	// The line, the protocol's sync messages and awareness: a few KiB.
	if received > 64<<10 || sent > 64<<10 {
		t.Errorf("a reconnect to a %d MiB document it had read %d bytes and wrote %d: more than what was missing", size>>20, received, sent)
	}
	for _, s := range []string{"a", "b", "c", "d"} {
		p.Do("destroy", id(s), nil)
	}
	return want
}

func mib(b []int64) []int64 {
	out := make([]int64, len(b))
	for i, n := range b {
		out[i] = n >> 20
	}
	return out
}

// connectSyncedWithin is connectSynced with a longer wait, for providers
// that receive a big document.
func connectSyncedWithin(t *testing.T, p *yjs.Peers, id, url, room, user string, within time.Duration) {
	t.Helper()
	mark := p.Mark()
	p.Connect(id, url, room, testserver.Token(t, user, strings.ToUpper(user[:1])+user[1:], 0, nil), nil)
	p.AwaitAfter(mark, within, id+" synced", synced(id))
}

// bigPastes runs the 1 MiB and the 20 MiB paste on dep, restarts it, and
// checks a fresh provider gets each document back.
func bigPastes(t *testing.T, dep bigDeployment) {
	p := yjs.StartPeers(t)
	docs := map[string]textDigest{}
	for i, size := range []int{1 << 20, 20 << 20} {
		room := fmt.Sprintf("paste-%dm", size>>20)
		docs[room] = pasteEverywhere(t, p, dep, room, size, i+1)
	}
	dep.restart(t)
	for room, want := range docs {
		id := room + "-after-restart"
		start := time.Now()
		connectSyncedWithin(t, p, id, yjsURL(dep.other()), room, "erin", bigDocWait)
		if got := digestOf(p, id); got != want {
			t.Fatalf("after a restart %s holds %v, want %v", room, got, want)
		}
		t.Logf("after a restart, %s (%d chars) synced in %v", room, want.Length, time.Since(start).Round(time.Millisecond))
		p.Do("destroy", id, nil)
	}
}

func TestBigDocPastesReachEveryProviderAndSurviveARestart(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) {
		env := map[string]string{"ROOMCAST_STORE": "sqlite:" + filepath.Join(t.TempDir(), "x.db")}
		s := testserver.Start(t, testserver.Options{Env: env})
		one := func() *testserver.Server { return s }
		bigPastes(t, bigDeployment{
			paster: one, other: one,
			pids: func() []int { return []int{s.Pid()} },
			restart: func(t *testing.T) {
				s.Kill()
				s = testserver.Start(t, testserver.Options{Addr: s.Addr, Env: env})
			},
		})
	})
	t.Run("redis", func(t *testing.T) {
		r, s := cluster(t, 2, nil)
		bigPastes(t, bigDeployment{
			paster: func() *testserver.Server { return s[0] },
			other:  func() *testserver.Server { return s[1] },
			pids:   func() []int { return []int{s[0].Pid(), s[1].Pid()} },
			restart: func(t *testing.T) {
				for _, x := range s {
					x.Kill()
				}
				for i, x := range s {
					// As cluster starts them.
					s[i] = testserver.Start(t, testserver.Options{Addr: x.Addr, Env: map[string]string{
						"ROOMCAST_REDIS_URL":    r.URL(),
						"ROOMCAST_INSTANCE_ID":  fmt.Sprint("inst-", string(rune('a'+i))),
						"ROOMCAST_PRESENCE_TTL": "3s",
						"ROOMCAST_HEARTBEAT":    "1s",
					}})
				}
			},
		})
	})
}

// A paste that takes the document over MAX_DOC_BYTES (64 MiB by default)
// closes its provider's socket with 1009 naming the limit; it is not
// stored, the other provider keeps editing, and y-websocket, which
// reconnects after every close and sends the paste again, is admitted at
// most once every few seconds (429 with Retry-After meanwhile).
func TestBigDocOverTheLimitIsRefusedWithoutAReconnectLoop(t *testing.T) {
	s := testserver.Start(t, testserver.Options{})
	p := yjs.StartPeers(t)
	connectSynced(t, p, "a", yjsURL(s), "too-big", "alice")
	connectSynced(t, p, "b", yjsURL(s), "too-big", "bob")
	p.Do("insert", "b", map[string]any{"text": "bob's notes\n"})
	awaitText(t, p, "a", digestOf(p, "b"), wait)

	connects := metric(t, s, "roomcast_connects_total")
	refusals := metric(t, s, "roomcast_size_backoff_refusals_total")
	stopRSS := rssPeak(s.Pid())
	mark := p.Mark()
	paste(p, "a", 65<<20, 7)
	e := p.AwaitAfter(mark, bigDocWait, "alice's socket closed", func(e yjs.Event) bool { return e.Ev == "close" && e.ID == "a" })
	if e.Code != 1009 || !strings.Contains(e.Reason, "64 MiB") || !strings.Contains(e.Reason, "ROOMCAST_MAX_DOC_BYTES") {
		t.Fatalf("alice's socket closed with %d %q, want 1009 naming the limit", e.Code, e.Reason)
	}

	// For 10 s alice's provider tries again by itself while bob edits.
	closed := time.Now()
	for i := 0; time.Since(closed) < 10*time.Second; i++ {
		p.Do("insert", "b", map[string]any{"text": fmt.Sprintf("edit %d\n", i)})
		time.Sleep(250 * time.Millisecond)
	}
	admitted := metric(t, s, "roomcast_connects_total") - connects
	refused := metric(t, s, "roomcast_size_backoff_refusals_total") - refusals
	var aliceCloses []string
	for _, e := range p.Events() {
		if e.Ev == "close" && e.ID == "a" && e.At.After(closed.Add(-time.Second)) {
			aliceCloses = append(aliceCloses, fmt.Sprint(e.Code))
		}
	}
	p.Do("destroy", "a", nil)
	peak := stopRSS()[0]
	t.Logf("in 10 s after a 65 MiB paste was refused: %v upgrades admitted, %v refused with 429; alice's closes %v; server RSS peak %d MiB",
		admitted, refused, aliceCloses, peak>>20)
	if admitted > 4 {
		t.Errorf("%v upgrades of alice admitted in 10 s after a close for size: a reconnect loop", admitted)
	}
	if refused < 1 {
		t.Errorf("no upgrade refused with 429 while y-websocket retried")
	}
	if peak > bigDocRSSBudget {
		t.Errorf("server reached %d MiB resident refusing a 65 MiB paste (budget %d MiB)", peak>>20, bigDocRSSBudget>>20)
	}

	// Bob kept his socket and his edits; a fresh provider has them and
	// nothing of the paste.
	if info := p.Do("info", "b", nil); len(info["closes"].([]any)) != 0 {
		t.Fatalf("bob's socket closed: %v", info)
	}
	bob := digestOf(p, "b")
	if bob.Length > 1<<10 {
		t.Fatalf("bob has %d chars: the refused paste reached him", bob.Length)
	}
	connectSynced(t, p, "c", yjsURL(s), "too-big", "carol")
	if c := digestOf(p, "c"); c != bob {
		t.Fatalf("a fresh provider has %v, want bob's %v", c, bob)
	}
}

// A paste of 40 MiB (under MAX_DOC_BYTES, over what Redis lets a pub/sub
// subscriber have queued by default: 32 MiB) crosses instances without
// cutting their pub/sub links, which carry every other room too.
func TestBigDocPasteOverRedisPubSubLimitsCrossesInstances(t *testing.T) {
	_, s := cluster(t, 2, nil)
	p := yjs.StartPeers(t)
	connectSynced(t, p, "a", yjsURL(s[0]), "huge", "alice")
	connectSynced(t, p, "b", yjsURL(s[1]), "huge", "bob")
	gaps := []float64{metric(t, s[0], "roomcast_broker_gaps_total"), metric(t, s[1], "roomcast_broker_gaps_total")}
	stopRSS := rssPeak(s[0].Pid(), s[1].Pid())
	start := time.Now()
	want := paste(p, "a", 40<<20, 3)
	awaitText(t, p, "b", want, bigDocWait)
	took := time.Since(start)
	peaks := stopRSS()
	t.Logf("40 MiB paste on the other instance after %v; RSS peaks %v MiB", took.Round(time.Millisecond), mib(peaks))
	for i, x := range s {
		if g := metric(t, x, "roomcast_broker_gaps_total"); g != gaps[i] {
			t.Errorf("instance %d lost its pub/sub link %v times relaying a 40 MiB update", i, g-gaps[i])
		}
	}
	for i, peak := range peaks {
		if peak > bigDocRSSBudget {
			t.Errorf("server %d reached %d MiB resident with a 40 MiB document (budget %d MiB)", i, peak>>20, bigDocRSSBudget>>20)
		}
	}
	for _, id := range []string{"a", "b"} {
		if info := p.Do("info", id, nil); len(info["closes"].([]any)) != 0 {
			t.Errorf("%s's socket closed: %v", id, info)
		}
	}
}

// Two users paste 20 MiB at once while a third types: every provider
// reads, if not at once, so none is cut as too slow (4008) and all three
// converge. The third's queue holds one big update behind the one being
// written, and the keystrokes and keep-alives after it.
func TestBigDocTwoPastesAtOnceCutNoReader(t *testing.T) {
	s := testserver.Start(t, testserver.Options{})
	p := yjs.StartPeers(t)
	for _, id := range []string{"a", "b", "c"} {
		connectSynced(t, p, id, yjsURL(s), "two-pastes", "user-"+id)
	}
	p.Do("paste", "a", map[string]any{"size": 20 << 20, "seed": 1})
	p.Do("paste", "b", map[string]any{"size": 20 << 20, "seed": 2})
	for i := range 20 {
		p.Do("insert", "c", map[string]any{"pos": 0, "text": fmt.Sprint(i, " ")})
		p.Do("awareness", "c", map[string]any{"state": map[string]any{"cursor": i}})
	}
	p.Eventually(bigDocWait, "every provider has both pastes and the typing", func() (bool, string) {
		var n [3]int
		for i, id := range []string{"a", "b", "c"} {
			n[i] = int(p.Do("digest", id, nil)["length"].(float64))
		}
		return n[0] == n[1] && n[1] == n[2] && n[0] > 40<<20, fmt.Sprint(n)
	})
	for _, id := range []string{"a", "b", "c"} {
		if info := p.Do("info", id, nil); len(info["closes"].([]any)) != 0 {
			t.Errorf("%s's socket closed: %v", id, info)
		}
	}
	da, db, dc := digestOf(p, "a"), digestOf(p, "b"), digestOf(p, "c")
	if da != db || db != dc {
		t.Fatalf("the providers differ: %v, %v, %v", da, db, dc)
	}
}

// A frame whose header already says it is over MAX_DOC_BYTES is refused
// from its header (1009 naming the limit): the server neither waits for
// 64 MiB to arrive nor holds them, in memory or in the in-flight budget
// that other clients' big frames need.
func TestBigDocFrameOverTheLimitIsRefusedFromItsHeader(t *testing.T) {
	s := testserver.Start(t, testserver.Options{})
	ws := rawYjs(t, s, "declared", "mallory")
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); slowFrame(ws.UnderlyingConn(), 65<<20, stop) }()
	defer func() { close(stop); wg.Wait() }()
	// At 8 KB every 50 ms the frame would take 7 minutes to arrive.
	ce := closeOf(t, ws, wait)
	if ce.Code != 1009 || !strings.Contains(ce.Text, "64 MiB") || !strings.Contains(ce.Text, "ROOMCAST_MAX_DOC_BYTES") {
		t.Fatalf("a frame declaring 65 MiB closed with %d %q, want 1009 naming the limit", ce.Code, ce.Text)
	}
	if n := metric(t, s, "roomcast_inflight_bytes"); n > 1<<20 {
		t.Fatalf("%v bytes of the in-flight budget held by a refused frame", n)
	}
}
