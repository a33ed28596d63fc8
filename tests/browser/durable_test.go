package browser

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/roomcast/roomcast/tests/testserver"
)

// The board lives in the room's stream: it outlives its tabs, a tab that was
// offline catches up, and strokes stack in one order everywhere.

// setOffline cuts p's tab off the network, or connects it again, with
// DevTools network emulation. An open WebSocket stalls: nothing goes out or
// comes in until the tab is back online.
func (p *page) setOffline(offline bool) {
	p.t.Helper()
	p.do(func(ctx context.Context, t *chromedp.Target) (chromedp.Void, error) {
		if _, err := cdp.Call(ctx, t, network.Enable, network.EnableParams{}); err != nil {
			return chromedp.Void{}, err
		}
		rules := []*network.Conditions{}
		if offline {
			rules = append(rules, &network.Conditions{Offline: true, DownloadThroughput: -1, UploadThroughput: -1})
		}
		if _, err := cdp.Call(ctx, t, network.EmulateNetworkConditionsByRule, network.EmulateNetworkConditionsByRuleParams{
			MatchedNetworkConditions: rules,
		}); err != nil {
			return chromedp.Void{}, err
		}
		_, err := cdp.Call(ctx, t, network.OverrideNetworkState, network.OverrideNetworkStateParams{Offline: offline, DownloadThroughput: -1, UploadThroughput: -1})
		return chromedp.Void{}, err
	})
}

// sameBoards fails unless every page holds the first one's strokes, in the
// same stacking order, all stored, and shows them in the same pixels.
func sameBoards(t *testing.T, n int, pages ...*page) {
	t.Helper()
	for _, p := range pages {
		p.waitFor(fmt.Sprintf("%d stored strokes", n), fmt.Sprintf(`whiteboard.board.strokes.size === %d && %s`, n, allStoredJS))
	}
	want := pages[0].strokes()
	for _, p := range pages[1:] {
		got := p.strokes()
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("%s's board (bottom first):\n%v\nwant %s's:\n%v", p.name, got, pages[0].name, want)
		}
	}
	samePixels(t, "the boards", pages...)
}

// Everyone draws and leaves; the next person to open the room sees the same
// board, pixel for pixel. The history is short, so the board comes back
// from the room's state (which the tabs gave when asked) and the messages
// after it, clear and undo included.
func TestBoardOutlivesItsTabs(t *testing.T) {
	srv := testserver.Start(t, testserver.Options{Args: []string{"-dev"}, Env: map[string]string{"ROOMCAST_HISTORY_SIZE": "20"}})
	browser := startBrowser(t)
	const room = "keeps"

	ada := newUser(t, browser, "ada")
	ada.openRoom(joinURL(t, srv, room, "ada", "Ada"))
	bob := newUser(t, browser, "bob")
	bob.openRoom(joinURL(t, srv, room, "bob", "Bob"))

	ada.draw(wave(20, 0.5, 0.3, 0))
	ada.do(chromedp.Click(chromedp.ID("clear")))
	ada.do(chromedp.Click(chromedp.CSS(`input[aria-label="Red"]`)))
	ada.draw(wave(30, 0.3, 0.1, 0))
	publishStrokes(bob, "many", 12, 80, 0.6)
	bob.do(chromedp.Click(chromedp.CSS(`input[aria-label="Blue"]`)))
	bob.draw(wave(30, 0.45, 0.2, 1))
	ada.draw(wave(25, 0.2, 0.05, 2))
	ada.do(chromedp.Click(chromedp.ID("undo"))) // erases the last one
	ada.do(chromedp.Click(chromedp.CSS(`input[aria-label="Green"]`)))
	ada.draw(wave(40, 0.7, 0.15, 3))
	sameBoards(t, 15, ada, bob)
	want := ada.strokes()
	wantPixels := ada.canvas()
	st := waitRoomState(t, srv, room, 10)
	t.Logf("the room's state is at seq %d of %d", st.State.Seq, st.Seq)

	ada.close()
	bob.close()
	carol := newUser(t, browser, "carol")
	carol.openRoom(joinURL(t, srv, room, "carol", "Carol"))
	carol.waitPeople("Carol (you)")
	carol.waitFor("the board", `document.getElementById("stage").dataset.synced === "true" && whiteboard.board.strokes.size === 15 && `+allStoredJS)
	if got := carol.strokes(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("carol's board:\n%v\nwant the board as it was:\n%v", got, want)
	}
	got := carol.canvas()
	if got.Bounds() != wantPixels.Bounds() {
		t.Fatalf("carol's canvas is %v, ada's was %v", got.Bounds(), wantPixels.Bounds())
	}
	b := got.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			if got.At(x, y) != wantPixels.At(x, y) {
				carol.screenshot("outlives-carol.png")
				t.Fatalf("carol's canvas differs from the board as it was at (%d, %d): %v, want %v", x, y, got.At(x, y), wantPixels.At(x, y))
			}
		}
	}
}

// A tab goes offline for 10 s while another draws, undoes and clears, and
// draws a stroke of its own meanwhile. The server drops its silent socket;
// when the tab is back it resumes where it was and both boards end the same,
// pixel for pixel, its offline stroke delivered once.
func TestOfflineTabCatchesUp(t *testing.T) {
	// The server drops a socket silent for 2.5 pings: 2.5 s here.
	srv := testserver.Start(t, testserver.Options{Args: []string{"-dev"}, Env: map[string]string{"ROOMCAST_PING_INTERVAL": "1s"}})
	browser := startBrowser(t)
	const room = "offline"

	ada := newUser(t, browser, "ada")
	ada.openRoom(joinURL(t, srv, room, "ada", "Ada"))
	bob := newUser(t, browser, "bob")
	bob.openRoom(joinURL(t, srv, room, "bob", "Bob"))
	ada.waitPeople("Ada (you)", "Bob")
	ada.draw(wave(20, 0.3, 0.1, 0))
	bob.do(chromedp.Click(chromedp.CSS(`input[aria-label="Blue"]`)))
	bob.draw(wave(20, 0.6, 0.1, 1))
	sameBoards(t, 2, ada, bob)
	eval[chromedp.Void](bob, `window.statusLog = [];
		whiteboard.room.on("status", (s) => statusLog.push(s.status + " " + (s.code ?? "")));
		whiteboard.room.on("welcome", (w) => statusLog.push("welcome recovered " + w.recovered))`)

	bob.setOffline(true)
	offlineAt := time.Now()
	ada.do(chromedp.Click(chromedp.CSS(`input[aria-label="Red"]`)))
	ada.draw(wave(30, 0.4, 0.2, 0))
	// The socket is really gone: with frames held in front of the server's
	// pings, nothing came back from it for 2.5 s, the server dropped it and
	// Bob left. (An idle socket under emulation still answers pings.)
	ada.waitPeople("Ada (you)")
	ada.draw(wave(30, 0.5, 0.2, 2))
	ada.do(chromedp.Click(chromedp.ID("undo")))
	ada.do(chromedp.Click(chromedp.ID("clear")))
	ada.do(chromedp.Click(chromedp.CSS(`input[aria-label="Green"]`)))
	ada.draw(wave(30, 0.35, 0.25, 1))
	ada.draw(wave(30, 0.55, 0.1, 4))
	bob.draw(wave(30, 0.45, 0.3, 3)) // on the dead socket, or queued
	bobStroke := bob.strokes()[2].ID
	sameBoards(t, 2, ada)
	// Offline for 10 s in all: the scenario, not a wait for something.
	time.Sleep(time.Until(offlineAt.Add(10 * time.Second)))
	if s := eval[string](bob, `whiteboard.room.status`); s != "open" {
		t.Logf("bob's tab saw its socket end while offline (%s)", s)
	}

	bob.setOffline(false)
	// The socket ended (1006, no close frame) and the tab resumed.
	bob.waitFor("a resume", `statusLog.includes("reconnecting 1006") && statusLog.includes("welcome recovered true") && whiteboard.room.status === "open"`)
	ada.waitPeople("Ada (you)", "Bob")
	sameBoards(t, 3, ada, bob)
	got := ada.strokes()
	if got[2].ID != bobStroke {
		t.Errorf("bob's offline stroke %s is not on top of ada's board: %v", bobStroke, got)
	}
}

// Two people finish strokes that cross at the same moment, three times over.
// Each tab first shows its own on top, then both take the server's order:
// the same stacking everywhere, for a newcomer too.
func TestSimultaneousStrokesStackAlike(t *testing.T) {
	srv := startDev(t, "")
	browser := startBrowser(t)
	const room = "crossing"

	ada := newUser(t, browser, "ada")
	ada.openRoom(joinURL(t, srv, room, "ada", "Ada"))
	bob := newUser(t, browser, "bob")
	bob.openRoom(joinURL(t, srv, room, "bob", "Bob"))
	ada.waitPeople("Ada (you)", "Bob")
	ada.do(chromedp.Click(chromedp.CSS(`input[aria-label="Red"]`)))
	bob.do(chromedp.Click(chromedp.CSS(`input[aria-label="Blue"]`)))
	for _, p := range []*page{ada, bob} {
		p.do(chromedp.SetValue(chromedp.ID("width"), "30"))
		p.do(chromedp.Evaluate[chromedp.Void](`document.getElementById("width").dispatchEvent(new Event("input"))`))
	}

	for round := 0; round < 3; round++ {
		y := 0.25 + 0.25*float64(round)
		// A horizontal and a vertical bar through the same spot.
		horizontal := [][2]float64{{0.2, y}, {0.5, y}, {0.8, y}}
		vertical := [][2]float64{{0.5, y - 0.1}, {0.5, y}, {0.5, y + 0.1}}
		type tab struct {
			p       *page
			press   []chromedp.Action[chromedp.Void]
			release chromedp.Action[chromedp.Void]
		}
		tabs := []tab{{p: ada}, {p: bob}}
		tabs[0].press, tabs[0].release = ada.strokeSteps(horizontal)
		tabs[1].press, tabs[1].release = bob.strokeSteps(vertical)
		for _, tb := range tabs {
			tb.p.do(tb.press...)
		}
		// Both buttons go up at once: both strokes are published together.
		errs := make(chan error, len(tabs))
		for _, tb := range tabs {
			go func() {
				ctx, cancel := context.WithTimeout(tb.p.ctx, actionTimeout)
				defer cancel()
				errs <- chromedp.Do(ctx, tb.release)
			}()
		}
		for range tabs {
			if err := <-errs; err != nil {
				t.Fatalf("round %d: release: %v", round, err)
			}
		}
		sameBoards(t, 2*(round+1), ada, bob)
	}

	carol := newUser(t, browser, "carol")
	carol.openRoom(joinURL(t, srv, room, "carol", "Carol"))
	sameBoards(t, 6, ada, bob, carol)
}
