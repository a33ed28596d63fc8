package browser

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image/png"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	"github.com/golang-jwt/jwt/v5"

	"github.com/roomcast/roomcast/tests/testserver"
)

// One browser is cut off the network (DevTools offline emulation) for 10 s
// while both type into the document; when it is back, both hold the same
// document with everything each typed.
func TestDocOfflineEditsConverge(t *testing.T) {
	srv := startDev(t, "")
	browser := startBrowser(t)
	const room = "offline-notes"

	ada := newUser(t, browser, "ada")
	ada.openDoc(srv.URL+"/d/"+room, "Ada")
	bob := newUser(t, browser, "bob")
	bob.openDoc(srv.URL+"/d/"+room, "Bob")
	screenshotsOnFailure(t, ada, bob)
	ada.do(chromedp.SendKeys(chromedp.ID("editor"), "Shared start."))
	bob.waitText("Shared start.")

	bob.setOffline(true)
	offlineAt := time.Now()
	var adaWords, bobWords []string
	// Both type for the 10 s that Bob is offline: Ada at the end, Bob at
	// the start of the paragraph.
	bob.do(chromedp.Focus(chromedp.ID("editor")), chromedp.KeyEvent(kb.Home, chromedp.KeyModifiers(chromedp.ModifierCtrl)))
	ada.do(chromedp.Focus(chromedp.ID("editor")), chromedp.KeyEvent(kb.End, chromedp.KeyModifiers(chromedp.ModifierCtrl)))
	for i := 0; time.Since(offlineAt) < 10*time.Second; i++ {
		a, b := fmt.Sprintf(" a%d", i), fmt.Sprintf("b%d ", i)
		ada.do(chromedp.SendKeys(chromedp.ID("editor"), a))
		bob.do(chromedp.SendKeys(chromedp.ID("editor"), b))
		adaWords, bobWords = append(adaWords, a), append(bobWords, b)
	}
	// Meanwhile Ada's page has none of Bob's typing.
	if got := eval[string](ada, `roomcastDoc.text()`); strings.Contains(got, "b0") {
		t.Fatalf("ada has bob's offline typing before he is back: %q", got)
	}
	bob.setOffline(false)
	want := strings.Join(bobWords, "") + "Shared start." + strings.Join(adaWords, "")
	ada.waitText(want)
	bob.waitText(want)
	sameDocs(t, ada, bob)
}

// docVersionWith waits until the room has a document version whose text in
// p's editor is text, and returns its id.
func docVersionWith(t *testing.T, p *page, text string) int64 {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		id := eval[int64](p, fmt.Sprintf(`(async () => {
			for (const v of await roomcastHistory.list()) {
				if (v.kind === "doc" && roomcastDoc.versionText(await roomcastHistory.body(v.id)) === %s) return v.id;
			}
			return 0;
		})()`, js(text)))
		if id > 0 {
			return id
		}
		if time.Now().After(deadline) {
			t.Fatalf("no document version with the text %q", text)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// restoreFromHistory opens p's history panel, picks version id, waits for
// its preview to hold preview, and restores it.
func (p *page) restoreFromHistory(id int64, preview string) {
	p.t.Helper()
	p.do(chromedp.Click(chromedp.ID("history")))
	sel := fmt.Sprintf(`#history-list .version[data-id="%d"]`, id)
	p.do(chromedp.WaitVisible(chromedp.CSS(sel)), chromedp.Click(chromedp.CSS(sel)))
	p.waitFor("the version's preview", fmt.Sprintf(`document.querySelector("#history-preview .history-view")?.textContent.includes(%s) &&
		!document.getElementById("history-restore").disabled`, js(preview)))
	p.do(chromedp.Click(chromedp.ID("history-restore")))
	p.waitFor("the history closed", `!document.getElementById("history-dialog").open`)
}

// Versions are taken as the document changes (every second here); a
// version restored from the history panel becomes everyone's document, as
// a new edit: the restorer can undo it, and editing goes on.
func TestDocRestoreVersion(t *testing.T) {
	srv := testserver.Start(t, testserver.Options{Args: []string{"-dev"}, Env: map[string]string{"ROOMCAST_VERSION_INTERVAL": "1s"}})
	browser := startBrowser(t)
	const room = "versioned-notes"

	ada := newUser(t, browser, "ada")
	adaLog := ada.watchConsole()
	ada.openDoc(srv.URL+"/d/"+room, "Ada")
	bob := newUser(t, browser, "bob")
	bobLog := bob.watchConsole()
	bob.openDoc(srv.URL+"/d/"+room, "Bob")
	screenshotsOnFailure(t, ada, bob)

	ada.do(chromedp.SendKeys(chromedp.ID("editor"), "Version one."))
	bob.waitText("Version one.")
	first := docVersionWith(t, ada, "Version one.")
	ada.do(pressEnter(), chromedp.SendKeys(chromedp.ID("editor"), "Later text."))
	bob.do(chromedp.Focus(chromedp.ID("editor")), chromedp.KeyEvent(kb.End, chromedp.KeyModifiers(chromedp.ModifierCtrl)),
		chromedp.SendKeys(chromedp.ID("editor"), " Bob's too."))
	later := "Version one.\nLater text. Bob's too."
	ada.waitText(later)
	docVersionWith(t, ada, "Version one.Later text. Bob's too.")

	bob.restoreFromHistory(first, "Version one.")
	bob.screenshot("doc-restored-bob.png")
	ada.waitText("Version one.")
	bob.waitText("Version one.")
	sameDocs(t, ada, bob)

	// A new edit, not a rewrite: Bob undoes it and both have the later text.
	bob.waitFor("the editor focused again", `document.activeElement === document.getElementById("editor")`)
	bob.keysUntil("z", []chromedp.Modifier{chromedp.ModifierCtrl}, later, "Version one.")
	ada.waitText(later)
	adaLog.none(t, "ada")
	bobLog.none(t, "bob")
}

// The board's history lists the room's stored states; restoring one puts
// its strokes on every board, as a new edit after what was drawn since.
func TestBoardRestoreVersion(t *testing.T) {
	// A short history: the server asks a tab for the board's state after
	// two stored messages, and each state is versioned.
	srv := testserver.Start(t, testserver.Options{Args: []string{"-dev"}, Env: map[string]string{
		"ROOMCAST_VERSION_INTERVAL": "1s",
		"ROOMCAST_HISTORY_SIZE":     "4",
	}})
	browser := startBrowser(t)
	const room = "versioned-board"

	ada := newUser(t, browser, "ada")
	adaLog := ada.watchConsole()
	ada.openRoom(joinURL(t, srv, room, "ada", "Ada"))
	bob := newUser(t, browser, "bob")
	bob.openRoom(joinURL(t, srv, room, "bob", "Bob"))
	screenshotsOnFailure(t, ada, bob)

	ada.do(chromedp.Click(chromedp.CSS(`input[aria-label="Red"]`)))
	ada.draw(wave(20, 0.3, 0.1, 0))
	ada.draw(wave(20, 0.6, 0.1, 1))
	ada.waitFor("two stored strokes", `whiteboard.board.strokes.size === 2 && `+allStoredJS)
	old := ada.board()
	// The version with those two strokes.
	id := stateVersionWith(t, srv, room, old)

	// The board changes on: cleared, one blue stroke.
	ada.do(chromedp.Click(chromedp.ID("clear")))
	ada.do(chromedp.Click(chromedp.CSS(`input[aria-label="Blue"]`)))
	ada.draw(wave(20, 0.5, 0.2, 2))
	ada.waitFor("one stored stroke", `whiteboard.board.strokes.size === 1 && `+allStoredJS)
	bob.waitBoard("the blue stroke", ada.board())

	bob.restoreFromHistory(id, "")
	for _, p := range []*page{ada, bob} {
		p.waitFor("the restored board", fmt.Sprintf(`(() => {
			const want = %s;
			const got = [...whiteboard.board.strokes.values()];
			return got.length === want.length && got.every((s, i) => s.order !== Infinity && s.color === want[i].color &&
				JSON.stringify(s.points) === JSON.stringify(want[i].points));
		})()`, js(old)))
	}
	samePixels(t, "the restored board", ada, bob)
	adaLog.none(t, "ada")
}

// stateVersionWith waits until the room has a state version holding
// exactly strokes (their colours and points, in order) and returns its id.
func stateVersionWith(t *testing.T, srv *testserver.Server, room string, strokes []fullStroke) int64 {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var list struct {
			Versions []struct {
				ID   int64
				Kind string
			}
		}
		apiGet(t, srv, "/api/rooms/"+room+"/versions", &list)
		for _, v := range list.Versions {
			if v.Kind != "state" {
				continue
			}
			var body struct {
				Data struct {
					Strokes []fullStroke
				}
			}
			apiGet(t, srv, fmt.Sprintf("/api/rooms/%s/versions/%d", room, v.ID), &body)
			if sameStrokes(body.Data.Strokes, strokes) {
				return v.ID
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no state version of room %s with the strokes %v", room, strokes)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func sameStrokes(a, b []fullStroke) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Color != b[i].Color || fmt.Sprint(a[i].Points) != fmt.Sprint(b[i].Points) {
			return false
		}
	}
	return true
}

// apiGet reads a JSON route of the HTTP API with the API key.
func apiGet(t *testing.T, srv *testserver.Server, path string, v any) {
	t.Helper()
	req, err := http.NewRequest("GET", srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+testserver.APIKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: HTTP %d", path, resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
}

// readToken mints a token whose claims let its holder only view room: a
// read claim and no rooms claim.
func readToken(t *testing.T, sub, name, room string) string {
	t.Helper()
	now := time.Now()
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub": sub, "name": name, "read": []string{room}, "iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
	}).SignedString([]byte(testserver.Secret))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// A token with a read claim for the room makes both pages view only: a
// "View only" badge, nothing to type or draw with, and what the holder
// types or draws changes nothing anywhere and sends nothing. (The server
// enforces the claim too; this holds what the page does.)
func TestViewOnlyToken(t *testing.T) {
	srv := testserver.Start(t, testserver.Options{})
	browser := startBrowser(t)
	const room = "read-me"

	writer := newUser(t, browser, "writer")
	writer.navigate(srv.URL + "/d/" + room + "?token=" + url.QueryEscape(testserver.Token(t, "ada", "Ada", 0, []string{room})))
	writer.waitSynced()
	writer.do(chromedp.SendKeys(chromedp.ID("editor"), "Only Ada writes here."))

	viewer := newUser(t, browser, "viewer")
	viewerLog := viewer.watchConsole()
	viewer.focusAlways()
	token := url.QueryEscape(readToken(t, "vic", "Vic", room))
	viewer.navigate(srv.URL + "/d/" + room + "?token=" + token)
	viewer.waitSynced()
	viewer.waitText("Only Ada writes here.")
	viewer.waitFor("the view-only document page", `roomcastDoc.viewOnly && !roomcastDoc.view.editable &&
		document.getElementById("editor").getAttribute("contenteditable") === "false" &&
		!document.getElementById("view-only").hidden && document.getElementById("view-only").offsetWidth > 0 &&
		document.querySelector(".format-bar").hidden && document.getElementById("history-restore").hidden`)
	// The invite dialog offers the view link only.
	viewer.do(chromedp.Click(chromedp.ID("invite")))
	viewer.waitFor("the view link only", `document.getElementById("invite-dialog").open &&
		!document.getElementById("invite-edit") && document.getElementById("invite-view").value.endsWith("?view=1")`)
	viewer.do(chromedp.KeyEvent(kb.Escape))
	eval[chromedp.Void](viewer, `window.localUpdates = 0; roomcastDoc.doc.on("update", (u, origin) => { if (origin !== roomcastDoc.provider) localUpdates++; })`)
	viewer.do(
		chromedp.Click(chromedp.ID("editor")),
		chromedp.KeyEvent("Vic was here"),
		chromedp.KeyEvent("b", chromedp.KeyModifiers(chromedp.ModifierCtrl)),
		pressEnter(),
	)
	writer.do(chromedp.SendKeys(chromedp.ID("editor"), " Still."))
	viewer.waitText("Only Ada writes here. Still.")
	writer.waitText("Only Ada writes here. Still.")
	if n := eval[int](viewer, `localUpdates`); n != 0 {
		t.Errorf("the view-only page made %d document updates", n)
	}
	viewer.screenshot("doc-view-only.png")

	// The whiteboard: no tools, drawing draws nothing and publishes nothing.
	const board = "read-board"
	writer.openRoom(srv.URL + "/r/" + board + "?token=" + url.QueryEscape(testserver.Token(t, "ada", "Ada", 0, []string{board})))
	writer.draw(wave(10, 0.5, 0.1, 0))
	writer.waitFor("one stored stroke", `whiteboard.board.strokes.size === 1 && `+allStoredJS)
	viewer.openRoom(srv.URL + "/r/" + board + "?token=" + url.QueryEscape(readToken(t, "vic", "Vic", board)))
	viewer.waitFor("the view-only board", `whiteboard.viewOnly && document.getElementById("tools").hidden &&
		!document.getElementById("view-only").hidden && whiteboard.board.strokes.size === 1`)
	eval[chromedp.Void](viewer, `window.published = 0; { const p = whiteboard.room.publish.bind(whiteboard.room);
		whiteboard.room.publish = (data, o) => { if (!o?.ephemeral) published++; return p(data, o); }; }`)
	viewer.draw(wave(10, 0.3, 0.1, 1))
	viewer.do(chromedp.KeyEvent("z", chromedp.KeyModifiers(chromedp.ModifierCtrl)))
	writer.draw(wave(10, 0.7, 0.1, 2))
	writer.waitFor("two stored strokes", `whiteboard.board.strokes.size === 2 && `+allStoredJS)
	viewer.waitFor("the writer's two strokes only", `whiteboard.board.strokes.size === 2 && `+allStoredJS)
	if n := eval[int](viewer, `published`); n != 0 {
		t.Errorf("the view-only board published %d stored messages", n)
	}
	viewer.screenshot("board-view-only.png")
	viewerLog.none(t, "viewer")
}

// Every page fits phone, tablet and very wide windows with a 128-character room name
// and a 64-character user name: no horizontal scroll, the header inside
// the window. Screenshots of each go to tests/artifacts, each the size of
// its window. On the phone-width board, a finger draws.
func TestPagesFitPhones(t *testing.T) {
	srv := startDev(t, "")
	browser := startBrowser(t)
	room := strings.Repeat("long-room.", 12) + "abcdefgh"      // 128 characters
	name := strings.Repeat("Maximilian ", 5) + "Wolfeschlegel" // 68: trimmed below
	name = name[:64]
	if len(room) != 128 || len(name) != 64 {
		t.Fatalf("room %d, name %d characters", len(room), len(name))
	}
	p := newUser(t, browser, "phone")
	log := p.watchConsole()
	defer log.none(t, "phone")
	token := url.QueryEscape(devToken(t, srv.URL, "max", name, room))
	pages := []struct{ name, url, ready string }{
		{"doc", srv.URL + "/d/" + room + "?token=" + token, `window.roomcastDoc?.loaded() === true && document.querySelectorAll("#people .name").length === 1`},
		{"board", srv.URL + "/r/" + room + "?token=" + token, `document.getElementById("stage").dataset.synced === "true" && document.querySelectorAll("#people .name").length === 1`},
		// After the two: the landing page lists the room twice.
		{"landing", srv.URL + "/", `document.querySelectorAll("#recent .recent-room").length === 2 && !document.getElementById("name-field").hidden &&
			[...document.querySelectorAll("#recent .who")].every((e) => /online/.test(e.textContent))`},
	}
	for _, w := range []int64{360, 390, 768, 2560} {
		p.do(chromedp.EmulateViewport(w, 780, chromedp.EmulateMobile, chromedp.EmulateTouch))
		for _, pg := range pages {
			p.navigate(pg.url)
			p.waitFor(pg.name+" ready", pg.ready)
			fit := eval[struct {
				Scroll, Inner, Header float64
			}](p, `({scroll: document.documentElement.scrollWidth, inner: window.innerWidth,
				header: Math.max(0, ...[...document.querySelectorAll(".topbar > *, .landing > *")].map((e) => e.getBoundingClientRect().right))})`)
			if fit.Scroll > fit.Inner || fit.Header > fit.Inner {
				t.Errorf("%s at %d px: scrollWidth %v, header right edge %v, window %v", pg.name, w, fit.Scroll, fit.Header, fit.Inner)
			}
			shot := p.screenshot(fmt.Sprintf("%s-%d.png", pg.name, w))
			cfg, err := png.DecodeConfig(bytes.NewReader(shot))
			if err != nil {
				t.Fatalf("%s at %d px: screenshot: %v", pg.name, w, err)
			}
			if int64(cfg.Width) != w || cfg.Height != 780 {
				t.Errorf("%s at %d px: screenshot is %dx%d, want %dx780", pg.name, w, cfg.Width, cfg.Height, w)
			}
			if pg.name == "board" && w == 390 {
				p.touchDraw()
			}
		}
	}
}

// touchDraw draws a stroke on the board with one finger (touch events) and
// waits until the board holds it, stored.
func (p *page) touchDraw() {
	p.t.Helper()
	r := eval[struct{ X, Y, W, H float64 }](p, `(() => {
		const r = document.getElementById("board").getBoundingClientRect();
		return {X: r.left, Y: r.top, W: r.width, H: r.height};
	})()`)
	before := eval[int](p, `whiteboard.board.strokes.size`)
	touch := func(typ input.DispatchTouchEventType, fx, fy float64) chromedp.Action[chromedp.Void] {
		return func(ctx context.Context, t *chromedp.Target) (chromedp.Void, error) {
			pts := []*input.TouchPoint{{X: r.X + fx*r.W, Y: r.Y + fy*r.H}}
			if typ == input.DispatchTouchEventTypeTouchEnd {
				pts = []*input.TouchPoint{}
			}
			_, err := cdp.Call(ctx, t, input.DispatchTouchEvent, input.DispatchTouchEventParams{Type: typ, TouchPoints: pts})
			return chromedp.Void{}, err
		}
	}
	steps := []chromedp.Action[chromedp.Void]{touch(input.DispatchTouchEventTypeTouchStart, 0.2, 0.5)}
	for i := 1; i <= 10; i++ {
		steps = append(steps, touch(input.DispatchTouchEventTypeTouchMove, 0.2+0.06*float64(i), 0.5+0.02*float64(i)))
	}
	steps = append(steps, touch(input.DispatchTouchEventTypeTouchEnd, 0, 0))
	p.do(steps...)
	p.waitFor("the finger's stroke", fmt.Sprintf(`whiteboard.board.strokes.size === %d && `+allStoredJS+
		` && [...whiteboard.board.strokes.values()].at(-1).points.length >= 8`, before+1))
}

// Links in the document only ever point at http(s) or mailto addresses: a
// link another client wrote into the Yjs document with a javascript:
// address shows with "#" instead (the history preview renders with the same
// schema); an https one shows as it is.
func TestDocLinksAreSafe(t *testing.T) {
	srv := startDev(t, "")
	browser := startBrowser(t)
	const room = "linked-notes"
	ada := newUser(t, browser, "ada")
	ada.openDoc(srv.URL+"/d/"+room, "Ada")
	bob := newUser(t, browser, "bob")
	bob.openDoc(srv.URL+"/d/"+room, "Bob")

	// Written straight into the fragment, as another client could.
	eval[chromedp.Void](ada, `(() => {
		const { Y, doc } = roomcastDoc;
		const frag = doc.getXmlFragment("prosemirror");
		const p = new Y.XmlElement("paragraph");
		const text = new Y.XmlText();
		p.insert(0, [text]);
		doc.transact(() => {
			frag.insert(frag.length, [p]);
			text.insert(0, "bad", { link: { href: "javascript:alert(1)", title: null } });
			text.insert(3, " good", { link: { href: "https://example.com/", title: null } });
		});
	})()`)
	for _, p := range []*page{ada, bob} {
		p.waitFor("the links", `(() => {
			const a = [...document.querySelectorAll("#editor a")];
			return a.length === 2 && a[0].getAttribute("href") === "#" && a[1].getAttribute("href") === "https://example.com/" &&
				![...document.querySelectorAll("a")].some((e) => /^\s*javascript:/i.test(e.getAttribute("href") ?? ""));
		})()`)
	}
}

// The invite dialog gives an edit link and a view link; whoever opens the
// view link on a -dev server (asking for a role=read token) gets a
// view-only page that follows the document live.
func TestInviteLinks(t *testing.T) {
	srv := startDev(t, "")
	browser := startBrowser(t)
	const room = "invite-notes"
	ada := newUser(t, browser, "ada")
	ada.openDoc(srv.URL+"/d/"+room, "Ada")
	ada.do(chromedp.Click(chromedp.ID("invite")))
	ada.waitFor("both links", fmt.Sprintf(`document.getElementById("invite-dialog").open &&
		document.getElementById("invite-edit").value === %s && document.getElementById("invite-view").value === %s`,
		js(srv.URL+"/d/"+room), js(srv.URL+"/d/"+room+"?view=1")))
	view := eval[string](ada, `document.getElementById("invite-view").value`)
	ada.do(chromedp.KeyEvent(kb.Escape))
	ada.waitFor("the dialog closed", `!document.getElementById("invite-dialog").open`)

	bob := newUser(t, browser, "bob")
	bob.openDoc(view, "Bob")
	bob.waitFor("a view-only page", `roomcastDoc.viewOnly && !roomcastDoc.view.editable && !document.getElementById("view-only").hidden`)
	ada.do(chromedp.SendKeys(chromedp.ID("editor"), "For Bob to read."))
	bob.waitText("For Bob to read.")
	ada.waitPeople("Ada (you)", "Bob")
}

// The plain-text editor stays as an option (?plain=1): a textarea on the
// Y.Text "text", live between two people, undo of one's own typing only.
func TestDocPlainText(t *testing.T) {
	srv := startDev(t, "")
	browser := startBrowser(t)
	const room = "plain-notes"
	ada := newUser(t, browser, "ada")
	adaLog := ada.watchConsole()
	ada.openDoc(srv.URL+"/d/"+room+"?plain=1", "Ada")
	bob := newUser(t, browser, "bob")
	bob.openDoc(srv.URL+"/d/"+room+"?plain=1", "Bob")
	ada.do(chromedp.SendKeys(chromedp.ID("editor"), "Plain\nand simple."))
	bob.waitText("Plain\nand simple.")
	bob.do(chromedp.Focus(chromedp.ID("editor")), chromedp.KeyEvent(kb.End, chromedp.KeyModifiers(chromedp.ModifierCtrl)),
		chromedp.SendKeys(chromedp.ID("editor"), " Bob."))
	ada.waitText("Plain\nand simple. Bob.")
	ada.waitFor("bob's caret", `document.querySelector('#carets .remote-caret[data-user="bob"]')?.textContent === "Bob"`)
	ada.keysUntil("z", []chromedp.Modifier{chromedp.ModifierCtrl}, " Bob.", " Bob.")
	bob.waitText(" Bob.")
	if eval[bool](ada, `document.getElementById("mode-switch").getAttribute("href").includes("plain=1") || !document.getElementById("mode-switch").textContent.includes("Rich")`) {
		t.Error("the plain page's switch does not lead to the rich editor")
	}
	adaLog.none(t, "ada")
}
