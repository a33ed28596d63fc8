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

// Two people write one shared text document on /d/{room} (Yjs over the
// y-websocket endpoint /yjs/{room}), typing with real key events, also at
// the same time at two places; each sees the other in the sidebar and the
// other's caret; undo takes back only one's own typing; and a reloaded page
// gets the whole text back from the server.
func TestDocTwoUsersEdit(t *testing.T) {
	srv := startDev(t, "")
	browser := startBrowser(t)
	const room = "shared-notes"

	ada := newUser(t, browser, "ada")
	ada.openDoc(srv.URL+"/d/"+room, "Ada Lovelace")
	ada.waitPeople("Ada Lovelace (you)")
	grace := newUser(t, browser, "grace")
	grace.openDoc(srv.URL+"/d/"+room, "Grace Hopper")
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

	// Ada writes the first line; Grace sees it as it is typed.
	ada.do(chromedp.SendKeys(chromedp.ID("editor"), "Ada was here.\n"))
	line1 := "Ada was here.\n"
	ada.waitText(line1)
	grace.waitText(line1)

	// Grace goes to the end and writes the second line.
	grace.do(
		chromedp.Focus(chromedp.ID("editor")),
		chromedp.KeyEvent(kb.End, chromedp.KeyModifiers(chromedp.ModifierCtrl)),
		chromedp.SendKeys(chromedp.ID("editor"), "Grace too."),
	)
	text := line1 + "Grace too."
	grace.waitText(text)
	ada.waitText(text)

	// Ada sees where Grace's caret is: a marker with her name, and the line.
	ada.waitFor("grace's caret", `(() => {
		const c = document.querySelector('#carets .remote-caret[data-user="grace hopper"]');
		return c?.textContent === "Grace Hopper" &&
			document.querySelector('#people [data-user="grace hopper"] .detail').textContent === "at line 2";
	})()`)

	// Both type at once: Ada at the very start, Grace at the end. Every
	// keystroke of the other moves the text under their carets, and each
	// one's typing must still end up in one piece where they typed it.
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, step := range []struct {
		p       *page
		actions []chromedp.Action[chromedp.Void]
	}{
		{ada, []chromedp.Action[chromedp.Void]{
			chromedp.Focus(chromedp.ID("editor")),
			chromedp.KeyEvent(kb.Home, chromedp.KeyModifiers(chromedp.ModifierCtrl)),
			chromedp.SendKeys(chromedp.ID("editor"), "[ada typing at the start] "),
		}},
		{grace, []chromedp.Action[chromedp.Void]{
			chromedp.SendKeys(chromedp.ID("editor"), " [grace typing at the end]"),
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
	text = "[ada typing at the start] " + text + " [grace typing at the end]"
	ada.waitText(text)
	grace.waitText(text)

	// Undo is per person: Ada's Ctrl+Z takes back her typing, not Grace's,
	// and Ctrl+Shift+Z brings it back.
	ada.do(chromedp.KeyEvent("z", chromedp.KeyModifiers(chromedp.ModifierCtrl)))
	undone := fmt.Sprintf(`(() => {
		const v = document.getElementById("editor").value;
		return v === roomcastDoc.text() && v !== %s && v.endsWith("Grace too. [grace typing at the end]");
	})()`, js(text))
	ada.waitFor("ada's typing undone", undone)
	grace.waitFor("ada's typing undone", undone)
	if v := eval[string](ada, `document.getElementById("editor").value`); strings.Contains(v, "[ada typing at the start]") {
		t.Errorf("after undo ada's text is %q, want her last typing gone", v)
	}
	ada.do(chromedp.KeyEvent("z", chromedp.KeyModifiers(chromedp.ModifierCtrl, chromedp.ModifierShift)))
	ada.waitText(text)
	grace.waitText(text)

	ada.screenshot("doc-ada.png")
	grace.screenshot("doc-grace.png")

	// Grace reloads: the page asks for her name again (prefilled), syncs,
	// and has the whole text from the server.
	grace.do(chromedp.Reload())
	grace.waitFor("the name dialog after the reload", `document.getElementById("join-dialog").open &&
		document.getElementById("join-name").value === "Grace Hopper"`)
	grace.do(chromedp.Click(chromedp.CSS(`#join-form button[type="submit"]`)))
	grace.waitSynced()
	grace.waitText(text)
	grace.waitPeople("Ada Lovelace", "Grace Hopper (you)")
	ada.waitPeople("Ada Lovelace (you)", "Grace Hopper")

	// And the reloaded page edits on: Ada sees it.
	grace.do(
		chromedp.Focus(chromedp.ID("editor")),
		chromedp.KeyEvent(kb.End, chromedp.KeyModifiers(chromedp.ModifierCtrl)),
		chromedp.SendKeys(chromedp.ID("editor"), "\nBack again."),
	)
	text += "\nBack again."
	grace.waitText(text)
	ada.waitText(text)
	grace.screenshot("doc-grace-reloaded.png")
}

// openDoc opens a document page without a token, types the name into the
// page's dialog (as on the whiteboard) and waits until it is synced.
func (p *page) openDoc(u, name string) {
	p.t.Helper()
	p.navigate(u)
	p.do(
		chromedp.WaitVisible(chromedp.ID("join-name")),
		chromedp.SendKeys(chromedp.ID("join-name"), name),
		chromedp.Click(chromedp.CSS(`#join-form button[type="submit"]`)),
	)
	p.waitSynced()
}

// waitSynced waits until the document socket is connected and synced and
// the editor takes input.
func (p *page) waitSynced() {
	p.t.Helper()
	p.waitFor("the synced document", `document.getElementById("status").dataset.status === "open" &&
		window.roomcastDoc?.synced() === true && document.getElementById("synced").dataset.synced === "true" &&
		!document.getElementById("editor").readOnly`)
}

// waitText waits until the textarea and the Y.Text both hold text.
func (p *page) waitText(text string) {
	p.t.Helper()
	p.waitFor(fmt.Sprintf("the text %q", text), fmt.Sprintf(`document.getElementById("editor").value === %[1]s && roomcastDoc.text() === %[1]s`, js(text)))
}

// docState describes the document page, for failure messages.
func (p *page) docState() string {
	ctx, cancel := context.WithTimeout(p.ctx, 3*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](`JSON.stringify({
		url: location.href,
		status: document.getElementById("status")?.textContent,
		synced: document.getElementById("synced")?.textContent,
		editor: document.getElementById("editor")?.value,
		text: window.roomcastDoc?.text(),
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
