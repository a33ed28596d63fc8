package browser

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/roomcast/roomcast/tests/testserver"
)

// Two people write one shared rich-text document on /d/{room} (ProseMirror
// bound to Yjs over the y-websocket endpoint /yjs/{room}), typing with real
// key events, also into the same paragraph at the same time; each sees the
// other in the sidebar and the other's cursor with their name; both end
// with the same ProseMirror document; undo takes back only one's own
// typing; formatting reaches the other; and a reloaded page gets the whole
// document back from the server.
func TestDocTwoUsersEdit(t *testing.T) {
	srv := startDev(t, "")
	browser := startBrowser(t)
	const room = "shared-notes"

	ada := newUser(t, browser, "ada")
	adaLog := ada.watchConsole()
	ada.openDoc(srv.URL+"/d/"+room, "Ada Lovelace")
	ada.waitPeople("Ada Lovelace (you)")
	grace := newUser(t, browser, "grace")
	graceLog := grace.watchConsole()
	grace.openDoc(srv.URL+"/d/"+room, "Grace Hopper")
	screenshotsOnFailure(t, ada, grace)
	t.Cleanup(func() {
		if t.Failed() {
			for _, p := range []*page{ada, grace} {
				if !p.closed {
					t.Logf("%s document: %s", p.name, p.docState())
				}
			}
		}
	})

	// One member each, although each tab holds two sockets (the document
	// and the JSON presence one).
	ada.waitPeople("Ada Lovelace (you)", "Grace Hopper")
	grace.waitPeople("Ada Lovelace", "Grace Hopper (you)")
	ada.waitFor("grace with both sockets", `(() => {
		const m = roomcastDoc.room.members.get("grace hopper");
		return m?.conns === 2 && !document.querySelector('#people [data-user="grace hopper"] .detail').textContent.includes("tabs");
	})()`)

	// Ada writes the first paragraph; Grace sees it as it is typed.
	ada.do(chromedp.SendKeys(chromedp.ID("editor"), "Ada was here."))
	line1 := "Ada was here."
	ada.waitText(line1)
	grace.waitText(line1)

	// Grace goes to the end and writes a second paragraph.
	grace.do(
		chromedp.Focus(chromedp.ID("editor")),
		chromedp.KeyEvent(kb.End, chromedp.KeyModifiers(chromedp.ModifierCtrl)),
		pressEnter(),
		chromedp.SendKeys(chromedp.ID("editor"), "Grace too."),
	)
	text := line1 + "\nGrace too."
	grace.waitText(text)
	ada.waitText(text)

	// Each sees the other's cursor, labelled with the other's name.
	ada.do(chromedp.Focus(chromedp.ID("editor")))
	ada.waitFor("grace's cursor", cursorJS("grace hopper", "Grace Hopper"))
	grace.waitFor("ada's cursor", cursorJS("ada lovelace", "Ada Lovelace"))

	// Typing within half a second is one undo step: let Ada's first
	// paragraph be a step of its own, as it is for a person who paused,
	// so her undo below can stop between the two (on a fast machine the
	// steps above take less than that).
	time.Sleep(600 * time.Millisecond)

	// Both type into the same paragraph at once: Ada at its start, Grace
	// at its end. Every keystroke of the other moves the text under their
	// cursors, and each one's typing must still end up in one piece where
	// they typed it, the same in both browsers.
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, step := range []struct {
		p       *page
		actions []chromedp.Action[chromedp.Void]
	}{
		{ada, []chromedp.Action[chromedp.Void]{
			chromedp.Focus(chromedp.ID("editor")),
			chromedp.KeyEvent(kb.End, chromedp.KeyModifiers(chromedp.ModifierCtrl)),
			chromedp.KeyEvent(kb.Home),
			chromedp.SendKeys(chromedp.ID("editor"), "[ada at the start] "),
		}},
		{grace, []chromedp.Action[chromedp.Void]{
			chromedp.SendKeys(chromedp.ID("editor"), " [grace at the end]"),
		}},
	} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(step.p.ctx, actionTimeout)
			defer cancel()
			if err := chromedp.Do(ctx, step.actions...); err != nil {
				errs[i] = fmt.Errorf("%s: %w", step.p.name, err)
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	text = line1 + "\n[ada at the start] Grace too. [grace at the end]"
	ada.waitText(text)
	grace.waitText(text)
	sameDocs(t, ada, grace)

	// Undo is per person: Ada's Ctrl+Z takes back her typing, not Grace's,
	// and Ctrl+Shift+Z brings it back; then Grace's takes back hers only.
	// (Typing comes back in steps of what was typed within half a second.)
	undone := line1 + "\nGrace too. [grace at the end]"
	ada.keysUntil("z", []chromedp.Modifier{chromedp.ModifierCtrl}, undone, "[grace at the end]")
	grace.waitText(undone)
	ada.keysUntil("z", []chromedp.Modifier{chromedp.ModifierCtrl, chromedp.ModifierShift}, text, "[grace at the end]")
	grace.waitText(text)
	undone = line1 + "\n[ada at the start] " // all of Grace's typing in that paragraph
	grace.keysUntil("z", []chromedp.Modifier{chromedp.ModifierCtrl}, undone, "[ada at the start] ")
	ada.waitText(undone)
	grace.keysUntil("z", []chromedp.Modifier{chromedp.ModifierCtrl, chromedp.ModifierShift}, text, "[ada at the start] ")
	ada.waitText(text)

	// Formatting: Ada makes the first paragraph a heading from the toolbar,
	// and writes a bullet list with a bold word; Grace has the same document.
	ada.do(chromedp.KeyEvent(kb.Home, chromedp.KeyModifiers(chromedp.ModifierCtrl)))
	// The heading goes on the first paragraph: the toolbar acts where the
	// cursor is once the key has moved it there.
	ada.waitFor("the cursor at the start", `roomcastDoc.view.state.selection.from <= 1`)
	ada.do(
		chromedp.Click(chromedp.ID("tb-h1")),
		chromedp.KeyEvent(kb.End, chromedp.KeyModifiers(chromedp.ModifierCtrl)),
		pressEnter(),
		chromedp.SendKeys(chromedp.ID("editor"), "- first item "),
		chromedp.KeyEvent("b", chromedp.KeyModifiers(chromedp.ModifierCtrl)),
		chromedp.SendKeys(chromedp.ID("editor"), "bold"),
	)
	ada.waitFor("a heading and a list with bold", `(() => {
		const d = roomcastDoc.json();
		const li = d.content.find((n) => n.type === "bullet_list")?.content?.[0]?.content?.[0]?.content ?? [];
		return d.content[0].type === "heading" && d.content[0].attrs.level === 1 &&
			li.some((n) => n.text === "bold" && n.marks?.[0]?.type === "strong");
	})()`)
	sameDocs(t, ada, grace)

	updateDocsImage(t, "document.png", ada.screenshot("doc-ada.png"))
	grace.screenshot("doc-grace.png")
	want := eval[string](ada, `JSON.stringify(roomcastDoc.json())`)

	// Grace reloads: the page asks for her name again (prefilled), syncs,
	// and has the whole document from the server.
	grace.do(chromedp.Reload())
	grace.waitFor("the name dialog after the reload", `document.getElementById("join-dialog").open &&
		document.getElementById("join-name").value === "Grace Hopper"`)
	grace.do(chromedp.Click(chromedp.CSS(`#join-form button[type="submit"]`)))
	grace.waitSynced()
	grace.waitFor("the whole document", fmt.Sprintf(`JSON.stringify(roomcastDoc.json()) === %s`, js(want)))
	grace.waitPeople("Ada Lovelace", "Grace Hopper (you)")
	ada.waitPeople("Ada Lovelace (you)", "Grace Hopper")

	// And the reloaded page edits on: Ada sees it.
	grace.do(
		chromedp.Focus(chromedp.ID("editor")),
		chromedp.KeyEvent(kb.End, chromedp.KeyModifiers(chromedp.ModifierCtrl)),
		chromedp.SendKeys(chromedp.ID("editor"), " Back again."),
	)
	ada.waitFor("grace's typing after her reload", `roomcastDoc.text().endsWith("bold Back again.")`)
	sameDocs(t, ada, grace)
	grace.screenshot("doc-grace-reloaded.png")
	adaLog.none(t, "ada")
	graceLog.none(t, "grace")
}

// keysUntil presses key with mods in p's editor until its text is want, at
// most 40 times; after every press the text must still hold keep (what
// the other wrote). A key press is handled before its dispatch returns, so
// the text is read right after it.
func (p *page) keysUntil(key string, mods []chromedp.Modifier, want, keep string) {
	p.t.Helper()
	for i := 0; i < 40; i++ {
		got := eval[string](p, `roomcastDoc.text()`)
		if got == want {
			return
		}
		if !strings.Contains(got, keep) {
			p.t.Fatalf("%s: after %d presses of %q the text is %q: %q is gone", p.name, i, key, got, keep)
		}
		p.do(chromedp.KeyEvent(key, chromedp.KeyModifiers(mods...)))
	}
	p.t.Fatalf("%s: after 40 presses of %q the text is %q, want %q", p.name, key, eval[string](p, `roomcastDoc.text()`), want)
}

// cursorJS is true when the editor shows the cursor of user id labelled name.
func cursorJS(id, name string) string {
	return fmt.Sprintf(`[...document.querySelectorAll('#editor .remote-cursor[data-user=%s] .remote-cursor-name')].some((e) => e.textContent === %s)`,
		js(id), js(name))
}

// sameDocs waits until every page's editor holds the first page's
// ProseMirror document (toJSON), then checks it once more.
func sameDocs(t *testing.T, pages ...*page) {
	t.Helper()
	want := eval[string](pages[0], `JSON.stringify(roomcastDoc.json())`)
	for _, p := range pages[1:] {
		p.waitFor("the same document as "+pages[0].name, fmt.Sprintf(`JSON.stringify(roomcastDoc.json()) === %s`, js(want)))
	}
	for _, p := range pages {
		if got := eval[string](p, `JSON.stringify(roomcastDoc.json())`); got != want {
			t.Fatalf("%s's document:\n%s\nwant:\n%s", p.name, got, want)
		}
	}
}

// openDoc opens a document page without a token, types the name into the
// page's dialog (as on the whiteboard) and waits until it is synced.
func (p *page) openDoc(u, name string) {
	p.t.Helper()
	p.focusAlways()
	p.navigate(u)
	p.do(
		chromedp.WaitVisible(chromedp.ID("join-name")),
		chromedp.SendKeys(chromedp.ID("join-name"), name),
		chromedp.Click(chromedp.CSS(`#join-form button[type="submit"]`)),
	)
	p.waitSynced()
}

// waitSynced waits until the document socket is connected and synced and
// the editor shows the document (and takes input, unless view only).
func (p *page) waitSynced() {
	p.t.Helper()
	p.waitFor("the synced document", `document.getElementById("status").dataset.status === "open" &&
		window.roomcastDoc?.synced() === true && document.getElementById("synced").dataset.synced === "true" &&
		roomcastDoc.loaded() && (roomcastDoc.viewOnly || (roomcastDoc.view ? roomcastDoc.view.editable : !document.getElementById("editor").readOnly))`)
}

// waitText waits until the editor holds text (its paragraphs joined with
// newlines; in the plain editor, the textarea and the Y.Text both).
func (p *page) waitText(text string) {
	p.t.Helper()
	p.waitFor(fmt.Sprintf("the text %q", text), fmt.Sprintf(`roomcastDoc.text() === %[1]s &&
		(roomcastDoc.view !== null || document.getElementById("editor").value === %[1]s)`, js(text)))
}

// docState describes the document page, for failure messages.
func (p *page) docState() string {
	ctx, cancel := context.WithTimeout(p.ctx, 3*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](`JSON.stringify({
		url: location.href,
		status: document.getElementById("status")?.textContent,
		synced: document.getElementById("synced")?.textContent,
		text: window.roomcastDoc?.text(),
		json: window.roomcastDoc?.json(),
		closes: window.roomcastDoc?.closes,
		people: [...document.querySelectorAll("#people .name")].map((e) => e.textContent),
	})`))
	if err != nil {
		return fmt.Sprintf("(unavailable: %v)", err)
	}
	return s
}

// The server goes away and comes back on the same address, empty (each
// start here has a store file of its own; TestDocSurvivesKill keeps one):
// the page says it is reconnecting, keeps what is typed meanwhile,
// reconnects with a fresh dev token and gives the server the whole text
// back, which a newcomer then gets.
func TestDocReconnectAfterServerRestart(t *testing.T) {
	srv := startDev(t, "")
	addr := srv.Addr
	browser := startBrowser(t)
	const room = "restart-notes"

	ada := newUser(t, browser, "ada")
	ada.openDoc(srv.URL+"/d/"+room, "Ada")
	t.Cleanup(func() {
		if t.Failed() && !ada.closed {
			t.Logf("ada document: %s", ada.docState())
		}
	})
	ada.do(chromedp.SendKeys(chromedp.ID("editor"), "Before the restart."))
	ada.waitText("Before the restart.")

	if err, _ := srv.Stop(actionTimeout); err != nil {
		t.Fatalf("stop server: %v", err)
	}
	ada.waitFor("the reconnecting status", `document.getElementById("status").dataset.status === "reconnecting" &&
		document.getElementById("status").textContent === "Reconnecting…" &&
		document.getElementById("synced").dataset.synced === "false" && !roomcastDoc.synced()`)
	// Offline, the editor still takes input.
	ada.do(chromedp.SendKeys(chromedp.ID("editor"), " Typed offline."))
	text := "Before the restart. Typed offline."
	ada.waitText(text)

	srv = startDev(t, addr)
	ada.waitSynced()
	ada.waitPeople("Ada (you)")

	bob := newUser(t, browser, "bob")
	bob.openDoc(srv.URL+"/d/"+room, "Bob")
	bob.waitText(text)
	ada.waitPeople("Ada (you)", "Bob")
}

// Without -dev the page mints no tokens: without one it explains where the
// token comes from; with one in the link it works.
func TestDocWithoutDevMode(t *testing.T) {
	srv := testserver.Start(t, testserver.Options{})
	browser := startBrowser(t)
	p := newUser(t, browser, "visitor")

	p.navigate(srv.URL + "/d/notes")
	p.waitFor("the explanation", `!document.getElementById("problem").hidden &&
		document.getElementById("problem-text").textContent.includes("?token=")`)

	token := testserver.Token(t, "hopper", "Grace", 0, []string{"notes"})
	p.navigate(srv.URL + "/d/notes?token=" + token)
	p.waitSynced()
	p.waitPeople("Grace (you)")
	p.do(chromedp.SendKeys(chromedp.ID("editor"), "hello"))
	p.waitText("hello")
}
