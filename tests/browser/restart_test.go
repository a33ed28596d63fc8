package browser

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/roomcast/roomcast/tests/testserver"
)

// A -dev instance keeps its rooms in its SQLite file: stopped (SIGTERM) or
// crashed (kill -9) and started again on the same address and file, it
// serves the same boards and documents. These tests hold what a user sees:
// a reloaded page shows everything, a page left open comes back by itself
// with everything, and a newcomer sees it too.

// storedDev starts the binary with -dev on addr (a free port when empty),
// keeping its rooms in the SQLite file store, with the API key set and a
// short history: a board comes back from the room's stored state and the
// messages after it, not from every message since the first.
func storedDev(t *testing.T, addr, store string) *testserver.Server {
	t.Helper()
	return testserver.Start(t, testserver.Options{Args: []string{"-dev"}, Addr: addr, Env: map[string]string{
		"ROOMCAST_STORE":        store,
		"ROOMCAST_API_KEY":      testserver.APIKey,
		"ROOMCAST_HISTORY_SIZE": "8",
	}})
}

// fullStroke is a stroke as the page holds it: everything that decides
// what is painted, and where in the stacking order.
type fullStroke struct {
	ID     string       `json:"id"`
	Color  string       `json:"color"`
	Width  float64      `json:"width"`
	Points [][2]float64 `json:"points"`
	Done   bool         `json:"done"`
	Stored bool         `json:"stored"`
}

// board is p's board, bottom stroke first.
func (p *page) board() []fullStroke {
	p.t.Helper()
	return eval[[]fullStroke](p, `[...whiteboard.board.strokes.values()].map((s) => ({
		id: s.id, color: s.color, width: s.width, points: s.points, done: s.done, stored: s.order !== Infinity}))`)
}

// waitBoard waits until p's board holds exactly want, in its order, every
// stroke stored.
func (p *page) waitBoard(what string, want []fullStroke) {
	p.t.Helper()
	p.waitFor(what, fmt.Sprintf(`(() => {
		const want = %s;
		const got = [...whiteboard.board.strokes.values()];
		return document.getElementById("stage").dataset.synced === "true" && got.length === want.length &&
			got.every((s, i) => s.order !== Infinity && s.done && s.id === want[i].id && s.color === want[i].color &&
				s.width === want[i].width && JSON.stringify(s.points) === JSON.stringify(want[i].points));
	})()`, js(want)))
	if got := p.board(); !reflect.DeepEqual(got, want) {
		p.t.Fatalf("%s: %s's board:\n%v\nwant:\n%v", what, p.name, got, want)
	}
}

// screenshotsOnFailure saves what the pages show when the test fails, for
// diagnosis only: nothing compares them.
func screenshotsOnFailure(t *testing.T, pages ...*page) {
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		for _, p := range pages {
			if p.closed {
				continue
			}
			ctx, cancel := context.WithTimeout(p.ctx, actionTimeout)
			png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
			cancel()
			if err != nil {
				t.Logf("%s: no screenshot: %v", p.name, err)
				continue
			}
			file := filepath.Join(artifactDir(t), strings.NewReplacer("/", "_", " ", "_").Replace(t.Name())+"-"+p.name+".png")
			if err := os.WriteFile(file, png, 0o644); err == nil {
				t.Logf("%s's page at the failure: %s", p.name, file)
			}
		}
	})
}

// Two people draw (colours, an undo, a clear) on a -dev instance; it stops
// and starts again on the same address and file. Ada reloads and has the
// board stroke for stroke, point for point, in the same stacking order; Bob
// left his tab open and it comes back by itself, resuming the same stream,
// with the same board and the stroke he drew while it was away; and the
// board goes on live.
func TestBoardSurvivesRestart(t *testing.T) {
	browser := startBrowser(t)
	for _, c := range []struct {
		name string
		stop func(t *testing.T, srv *testserver.Server)
	}{
		{"SIGTERM", func(t *testing.T, srv *testserver.Server) {
			if err, _ := srv.Stop(actionTimeout); err != nil {
				t.Fatalf("stop server: %v", err)
			}
		}},
		{"kill -9", func(t *testing.T, srv *testserver.Server) { srv.Kill() }},
	} {
		t.Run(c.name, func(t *testing.T) {
			store := "sqlite:" + filepath.Join(t.TempDir(), "rc.db")
			srv := storedDev(t, "", store)
			const room = "kept-board"

			ada := newUser(t, browser, "ada")
			ada.openRoom(joinURL(t, srv, room, "ada", "Ada"))
			bob := newUser(t, browser, "bob")
			bob.openRoom(joinURL(t, srv, room, "bob", "Bob"))
			screenshotsOnFailure(t, ada, bob)
			ada.waitPeople("Ada (you)", "Bob")

			ada.draw(wave(20, 0.5, 0.3, 0))
			ada.do(chromedp.Click(chromedp.ID("clear"))) // a stored clear: the first wave is gone
			ada.do(chromedp.Click(chromedp.CSS(`input[aria-label="Red"]`)))
			ada.draw(wave(30, 0.3, 0.1, 0))
			bob.do(chromedp.Click(chromedp.CSS(`input[aria-label="Blue"]`)))
			bob.draw(wave(25, 0.45, 0.2, 1))
			ada.draw(wave(25, 0.2, 0.05, 2))
			ada.do(chromedp.Click(chromedp.ID("undo"))) // a stored erase of the last one
			ada.do(chromedp.Click(chromedp.CSS(`input[aria-label="Green"]`)))
			ada.draw(wave(40, 0.7, 0.15, 3))
			bob.draw(wave(15, 0.85, 0.05, 4))
			// The tabs gave the board as the room's state (asked for as the
			// history filled); one more stroke follows it.
			ada.waitFor("four stored strokes", `whiteboard.board.strokes.size === 4 && `+allStoredJS)
			waitRoomState(t, srv, room, 8)
			ada.draw(wave(20, 0.1, 0.05, 5))
			ada.waitFor("five stored strokes", `whiteboard.board.strokes.size === 5 && `+allStoredJS)
			want := ada.board()
			bob.waitBoard("the board before the restart", want)
			before := roomState(t, srv, room)
			t.Logf("before the restart the room's state is at seq %d of %d", before.State.Seq, before.Seq)
			eval[chromedp.Void](bob, `window.resumes = []; whiteboard.room.on("welcome", (w) => resumes.push({epoch: w.epoch, seq: w.seq, recovered: w.recovered ?? null}))`)

			c.stop(t, srv)
			for _, p := range []*page{ada, bob} {
				p.waitFor("the reconnecting status", `document.getElementById("status").dataset.status === "reconnecting"`)
			}
			// Drawn while the instance is away: held by the tab, sent when
			// it is back.
			bob.draw(wave(20, 0.6, 0.1, 6))
			want = append(want, bob.board()[len(want)])
			want[len(want)-1].Stored = true
			srv = storedDev(t, srv.Addr, store)

			// The instance has the room's stream as it was: the same epoch
			// (a room it had lost would have a new one, whatever a tab gave
			// back), no seq lost, and the state it had.
			if after := roomState(t, srv, room); after.Epoch != before.Epoch || after.Seq < before.Seq || after.State == nil || after.State.Seq < before.State.Seq {
				t.Fatalf("after the restart the room is %+v, want epoch %s, seq %d or later and a state at %d or later, as before",
					after, before.Epoch, before.Seq, before.State.Seq)
			}

			// The page left open comes back by itself, resuming where it was.
			bob.waitConnected()
			bob.waitFor("a resume", `resumes.length > 0`)
			if r := eval[struct {
				Epoch     string
				Seq       uint64
				Recovered *bool
			}](bob, `resumes[0]`); r.Epoch != before.Epoch || r.Recovered == nil || !*r.Recovered {
				t.Errorf("bob's tab came back with %+v, want a recovered resume in epoch %s", r, before.Epoch)
			}
			bob.waitFor("the reconnected toast", `[...document.querySelectorAll(".toast")].some((e) => e.textContent === "Reconnected")`)
			bob.waitBoard("the board after the restart, in the tab left open", want)

			// Ada reloads: the page starts from what the instance kept.
			ada.do(chromedp.Reload())
			ada.waitConnected()
			ada.waitBoard("the board after the restart and a reload", want)
			ada.waitPeople("Ada (you)", "Bob")
			bob.waitPeople("Ada", "Bob (you)")

			// And the board goes on: a stroke drawn now reaches the tab left open.
			ada.draw(wave(20, 0.9, 0.05, 7))
			ada.waitFor("seven stored strokes", `whiteboard.board.strokes.size === 7 && `+allStoredJS)
			bob.waitBoard("the board after a stroke drawn after the restart", ada.board())
		})
	}
}

// Ada types on a -dev instance's document page; the instance is killed
// (kill -9) and started again on the same address and file. While her tab
// is cut off (so it cannot give the text back), a second browser opens the
// document and has the text from the instance alone; then Ada's tab is back
// online, she reloads, and has it too.
func TestDocSurvivesKill(t *testing.T) {
	browser := startBrowser(t)
	store := "sqlite:" + filepath.Join(t.TempDir(), "rc.db")
	srv := storedDev(t, "", store)
	const room = "kept-notes"

	ada := newUser(t, browser, "ada")
	ada.openDoc(srv.URL+"/d/"+room, "Ada")
	bob := newUser(t, browser, "bob")
	bob.openDoc(srv.URL+"/d/"+room, "Bob")
	screenshotsOnFailure(t, ada, bob)
	t.Cleanup(func() {
		if t.Failed() && !ada.closed {
			t.Logf("ada document: %s", ada.docState())
		}
	})

	ada.do(
		chromedp.SendKeys(chromedp.ID("editor"), "Kept for good."),
		pressEnter(),
		chromedp.SendKeys(chromedp.ID("editor"), "Second line"),
	)
	bob.waitText("Kept for good.\nSecond line")
	bob.do(
		chromedp.Focus(chromedp.ID("editor")),
		chromedp.KeyEvent(kb.End, chromedp.KeyModifiers(chromedp.ModifierCtrl)),
		chromedp.SendKeys(chromedp.ID("editor"), ", and Bob's."),
	)
	const text = "Kept for good.\nSecond line, and Bob's."
	// An update reaches the others only once it is in the file.
	ada.waitText(text)
	bob.waitText(text)
	sameDocs(t, ada, bob)
	want := eval[string](ada, `JSON.stringify(roomcastDoc.json())`)
	bob.close()

	srv.Kill()
	ada.waitFor("the reconnecting status", `document.getElementById("status").dataset.status === "reconnecting" && !roomcastDoc.synced()`)
	ada.setOffline(true)
	srv = storedDev(t, srv.Addr, store)

	carol := newUser(t, browser, "carol")
	carol.openDoc(srv.URL+"/d/"+room, "Carol")
	screenshotsOnFailure(t, carol)
	carol.waitText(text)
	carol.waitFor("the document as it was", fmt.Sprintf(`JSON.stringify(roomcastDoc.json()) === %s`, js(want)))
	if eval[bool](ada, `roomcastDoc.provider.wsconnected`) {
		t.Fatal("ada's tab reconnected while offline: the text carol has may be its copy, not the instance's")
	}

	ada.setOffline(false)
	ada.do(chromedp.Reload())
	ada.waitFor("the name dialog after the reload", `document.getElementById("join-dialog").open`)
	ada.do(chromedp.Click(chromedp.CSS(`#join-form button[type="submit"]`)))
	ada.waitSynced()
	ada.waitText(text)
	ada.waitPeople("Ada (you)", "Carol")

	// And the document goes on, both ways.
	carol.do(
		chromedp.Focus(chromedp.ID("editor")),
		chromedp.KeyEvent(kb.End, chromedp.KeyModifiers(chromedp.ModifierCtrl)),
		pressEnter(),
		chromedp.SendKeys(chromedp.ID("editor"), "After the crash."),
	)
	ada.waitText(text + "\nAfter the crash.")
	sameDocs(t, ada, carol)
}
