package browser

import (
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/roomcast/roomcast/tests/testserver"
)

// Two people find each other through the landing page and an invite link,
// draw together, and see each other come and go.
func TestTwoUsersDrawTogether(t *testing.T) {
	srv := startDev(t, "")
	browser := startBrowser(t)

	// Ada starts on the landing page, types her name and a room.
	ada := newUser(t, browser, "ada")
	ada.navigate(srv.URL + "/")
	ada.do(
		chromedp.WaitVisible(chromedp.ID("name")),
		chromedp.SendKeys(chromedp.ID("name"), "Ada Lovelace"),
		chromedp.SendKeys(chromedp.ID("room"), "Design review"),
		chromedp.Click(chromedp.ID("kind-board")),
	)
	updateDocsImage(t, "landing.png", ada.screenshot("landing.png"))
	ada.do(chromedp.Click(chromedp.ID("join")))
	ada.waitFor("the room page", `location.pathname === "/r/design-review" && new URLSearchParams(location.search).has("token")`)
	ada.waitConnected()
	ada.waitPeople("Ada Lovelace (you)")

	// Grace opens the invite link, which has no token: the page asks for her name.
	invite := srv.URL + "/r/design-review"
	grace := newUser(t, browser, "grace")
	grace.navigate(invite)
	grace.do(
		chromedp.WaitVisible(chromedp.ID("join-name")),
		chromedp.SendKeys(chromedp.ID("join-name"), "Grace Hopper"),
		chromedp.Click(chromedp.CSS(`#join-form button[type="submit"]`)),
	)
	grace.waitConnected()

	grace.waitPeople("Ada Lovelace", "Grace Hopper (you)")
	ada.waitPeople("Ada Lovelace (you)", "Grace Hopper")
	ada.waitFor("a join toast", `[...document.querySelectorAll(".toast")].some((e) => e.textContent === "Grace Hopper joined")`)

	// Ada draws a red wave with real pointer events; Grace sees it appear.
	ada.do(chromedp.Click(chromedp.CSS(`input[aria-label="Red"]`)))
	ada.draw(wave(40, 0.4, 0.15, 0))
	mine := ada.strokes()
	if len(mine) != 1 || !mine[0].Done || mine[0].Color != "#d7263d" || mine[0].Points < 30 {
		t.Fatalf("ada's board after drawing: %+v, want one finished red stroke of about 41 points", mine)
	}
	ada.waitStrokeShown(mine[0].ID, mine[0].Points)
	grace.waitStrokeShown(mine[0].ID, mine[0].Points)

	// And Grace draws back in blue, while her cursor shows on Ada's board.
	grace.do(chromedp.Click(chromedp.CSS(`input[aria-label="Blue"]`)))
	grace.draw(wave(30, 0.7, 0.08, 1.5))
	theirs := grace.strokes()
	if len(theirs) != 2 {
		t.Fatalf("grace's board: %+v, want 2 strokes", theirs)
	}
	ada.waitStrokeShown(theirs[1].ID, theirs[1].Points)
	ada.waitFor("grace's cursor", `[...document.querySelectorAll("#cursors .cursor")].some((e) => e.textContent === "Grace Hopper")`)

	ada.screenshot("two-users-ada.png")
	updateDocsImage(t, "whiteboard.png", grace.screenshot("two-users-grace.png"))

	// Grace closes her window: she leaves Ada's sidebar.
	grace.close()
	ada.waitPeople("Ada Lovelace (you)")
	ada.waitFor("a leave toast", `[...document.querySelectorAll(".toast")].some((e) => e.textContent === "Grace Hopper left")`)
}

// A late joiner sees everything drawn before it came, also a board too big
// for one message, and then follows clears live. The history is shorter
// than the board's messages, so the server asks the tabs for the board as
// the room's state again and again while they are sent, and the late joiner
// starts from the latest. The late joiner is on a phone-sized screen.
func TestLateJoinerSeesBoard(t *testing.T) {
	// A state request once 20 stored messages follow the latest state.
	srv := testserver.Start(t, testserver.Options{Args: []string{"-dev"}, Env: map[string]string{"ROOMCAST_HISTORY_SIZE": "40"}})
	browser := startBrowser(t)
	const room = "late-joiners"

	ada := newUser(t, browser, "ada")
	ada.openRoom(joinURL(t, srv, room, "ada", "Ada"))
	bob := newUser(t, browser, "bob")
	bob.openRoom(joinURL(t, srv, room, "bob", "Bob"))
	ada.waitPeople("Ada (you)", "Bob")

	// Drawn earlier, below where the waves go: 60 strokes of 250 points,
	// about 240 KB, far more than one message, sent as fast as the server
	// takes them.
	publishStrokes(ada, "old", 60, 250, 0.78)
	ada.draw(wave(25, 0.3, 0.1, 0))
	bob.do(chromedp.Click(chromedp.CSS(`input[aria-label="Green"]`)))
	bob.draw(wave(25, 0.6, 0.1, 2))
	ada.waitFor("bob's stroke", `whiteboard.board.strokes.size === 62 && `+allStoredJS)
	bob.waitFor("all strokes", `whiteboard.board.strokes.size === 62 && `+allStoredJS)
	want := ada.strokes()
	waitRoomState(t, srv, room, 40)

	carol := newUser(t, browser, "carol")
	carol.do(chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile))
	carol.openRoom(joinURL(t, srv, room, "carol", "Carol"))
	carol.waitFor("the synced board", `document.getElementById("stage").dataset.synced === "true" && whiteboard.board.strokes.size === 62`)
	got := carol.strokes()
	if len(got) != len(want) {
		t.Fatalf("carol has %d strokes, want %d", len(got), len(want))
	}
	// The same strokes in the same order (the order they are painted in).
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("carol's stroke %d is %+v, want %+v", i, got[i], want[i])
		}
	}
	carol.waitStrokeShown(want[60].ID, want[60].Points) // Ada's
	carol.waitStrokeShown(want[61].ID, want[61].Points) // Bob's
	carol.waitPeople("Ada", "Bob", "Carol (you)")

	// Phone width: nothing sticks out sideways, the board fits, every
	// control has an accessible name.
	layout := eval[struct {
		ScrollWidth, ViewWidth, BoardWidth float64
		Unnamed                            []string
	}](carol, `(() => {
		const named = (el) => el.getAttribute("aria-label") || el.labels?.[0]?.textContent.trim() || el.textContent.trim();
		return {
			ScrollWidth: document.documentElement.scrollWidth,
			ViewWidth: innerWidth,
			BoardWidth: document.getElementById("board").getBoundingClientRect().width,
			Unnamed: [...document.querySelectorAll("button, input, canvas, a")].filter((el) => !named(el)).map((el) => el.outerHTML),
		};
	})()`)
	if layout.ScrollWidth > layout.ViewWidth || layout.BoardWidth < 300 || layout.BoardWidth > layout.ViewWidth {
		t.Errorf("phone layout: %+v, want no sideways scroll and a board 300px..viewport wide", layout)
	}
	if len(layout.Unnamed) > 0 {
		t.Errorf("controls without an accessible name: %v", layout.Unnamed)
	}
	carol.screenshot("late-joiner-phone.png")

	// Clear goes to everyone live.
	bob.do(chromedp.Click(chromedp.ID("clear")))
	for _, p := range []*page{ada, carol, bob} {
		p.waitFor("an empty board", `whiteboard.board.strokes.size === 0`)
	}
}

// The server goes away twice (SIGTERM, then a crash) and comes back on the
// same address: the pages show that they are reconnecting, come back on their
// own with the right sidebar, and what was drawn while offline arrives.
func TestReconnectAfterServerRestart(t *testing.T) {
	srv := startDev(t, "")
	addr := srv.Addr
	browser := startBrowser(t)
	const room = "restarts"

	ada := newUser(t, browser, "ada")
	ada.openRoom(joinURL(t, srv, room, "ada", "Ada"))
	bob := newUser(t, browser, "bob")
	bob.openRoom(joinURL(t, srv, room, "bob", "Bob"))
	ada.waitPeople("Ada (you)", "Bob")
	bob.waitPeople("Ada", "Bob (you)")
	for _, p := range []*page{ada, bob} {
		eval[chromedp.Void](p, `window.statusLog = []; whiteboard.room.on("status", (s) => statusLog.push(s))`)
	}

	for i, stop := range []func(){
		func() {
			if err, _ := srv.Stop(actionTimeout); err != nil {
				t.Fatalf("stop server: %v", err)
			}
		},
		func() { srv.Kill() },
	} {
		stop()
		for _, p := range []*page{ada, bob} {
			p.waitFor("the reconnecting status", `document.getElementById("status").dataset.status === "reconnecting" &&
				document.getElementById("status").textContent === "Reconnecting…"`)
		}
		if i == 0 {
			// A server that shuts down says so (1001): the SDK tries again at once.
			first := eval[struct {
				Code  int
				Delay float64
			}](ada, `statusLog.find((s) => s.status === "reconnecting")`)
			if first.Code != 1001 || first.Delay != 0 {
				t.Errorf("first reconnect after a shutdown: %+v, want code 1001 and no delay", first)
			}
		}

		// Drawn while the server is down: queued, sent after the reconnect.
		ada.draw(wave(20, 0.2+0.3*float64(i), 0.05, 0))
		offline := ada.strokes()
		last := offline[len(offline)-1]

		srv = startDev(t, addr)
		ada.waitConnected()
		bob.waitConnected()
		ada.waitPeople("Ada (you)", "Bob")
		bob.waitPeople("Ada", "Bob (you)")
		bob.waitStrokeShown(last.ID, last.Points)
		if n := len(bob.strokes()); n != i+1 {
			t.Errorf("after restart %d bob has %d strokes, want %d", i+1, n, i+1)
		}
		ada.waitFor("the reconnected toast", `[...document.querySelectorAll(".toast")].some((e) => e.textContent === "Reconnected")`)
	}
}

// With LEAVE_GRACE a user whose last tab went away stays listed, dimmed as
// reconnecting; coming back within the grace is no leave at all, staying away
// is.
func TestLeaveGraceShowsReconnecting(t *testing.T) {
	srv := testserver.Start(t, testserver.Options{Args: []string{"-dev"}, Env: map[string]string{
		"ROOMCAST_LEAVE_GRACE": "2s",
		"ROOMCAST_HEARTBEAT":   "250ms", // the sweep that ends graces runs every heartbeat
	}})
	browser := startBrowser(t)
	const room = "grace"
	ada := newUser(t, browser, "ada")
	ada.openRoom(joinURL(t, srv, room, "ada", "Ada"))
	bob := newUser(t, browser, "bob")
	bob.openRoom(joinURL(t, srv, room, "bob", "Bob"))
	ada.waitPeople("Ada (you)", "Bob")

	const bobAway = `document.querySelector('#people [data-user="bob"]')?.classList.contains("away") &&
		document.querySelector('#people [data-user="bob"] .detail').textContent === "reconnecting…"`
	const bobBack = `document.querySelector('#people [data-user="bob"]')?.classList.contains("away") === false`
	bob.close()
	ada.waitFor("bob shown as reconnecting", bobAway)

	bob = newUser(t, browser, "bob again")
	bob.openRoom(joinURL(t, srv, room, "bob", "Bob"))
	ada.waitFor("bob back", bobBack)

	bob.close()
	ada.waitFor("bob shown as reconnecting", bobAway)
	ada.waitPeople("Ada (you)")
	toasts := eval[[]string](ada, `[...document.querySelectorAll(".toast")].map((e) => e.textContent)`)
	if n := len(slices.DeleteFunc(toasts, func(s string) bool { return s != "Bob left" })); n != 1 {
		t.Errorf("toasts %v: want exactly one \"Bob left\"", toasts)
	}
}

// Without -dev the server mints no tokens: the landing page and a join link
// without a token explain where tokens come from, and a join link with one
// works.
func TestWithoutDevMode(t *testing.T) {
	srv := testserver.Start(t, testserver.Options{})
	browser := startBrowser(t)
	p := newUser(t, browser, "visitor")

	p.navigate(srv.URL + "/")
	p.do(chromedp.WaitVisible(chromedp.ID("no-dev")))
	p.waitFor("the name field hidden", `document.getElementById("name-field").hidden`)

	p.navigate(srv.URL + "/r/board")
	p.waitFor("the explanation", `!document.getElementById("problem").hidden &&
		document.getElementById("problem-text").textContent.includes("?token=")`)

	token := testserver.Token(t, "hopper", "Grace", 0, []string{"board"})
	p.openRoom(srv.URL + "/r/board?token=" + token)
	p.waitPeople("Grace (you)")
}

// updateDocsImage writes a screenshot the README shows to docs/name, when
// ROOMCAST_UPDATE_DOCS is set (regenerate them with ROOMCAST_UPDATE_DOCS=1).
func updateDocsImage(t *testing.T, name string, png []byte) {
	t.Helper()
	if os.Getenv("ROOMCAST_UPDATE_DOCS") == "" {
		return
	}
	_, file, _, _ := runtime.Caller(0)
	path := filepath.Join(filepath.Dir(file), "..", "..", "docs", name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
}
