package browser

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"testing"

	"github.com/roomcast/roomcast/tests/testserver"
	"github.com/roomcast/roomcast/tests/yjs"
)

// A 1 MiB rich-text document (thousands of paragraphs in the
// "prosemirror" fragment, made with node yjs and stored with POST
// /api/rooms/{room}/doc) opens in the editor whole. The time from the
// page's start to the synced editor, and to its first paint after that, is
// logged (docs/YJS.md has the figures); nothing asserts on it.
func TestDocOpensOneMiB(t *testing.T) {
	yjs.Ensure(t)
	srv := testserver.Start(t, testserver.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), actionTimeout)
	defer cancel()
	var made struct {
		Update     string
		Paragraphs int
		Chars      int
	}
	if err := json.Unmarshal(yjs.Node(t, ctx, []byte(`{"bytes":1048576}`), "rich-doc.mjs"), &made); err != nil {
		t.Fatal(err)
	}
	update, err := base64.StdEncoding.DecodeString(made.Update)
	if err != nil {
		t.Fatal(err)
	}
	const room = "big-rich-doc"
	req, err := http.NewRequest("POST", srv.URL+"/api/rooms/"+room+"/doc", bytes.NewReader(update))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+testserver.APIKey)
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("POST doc: HTTP %d", resp.StatusCode)
	}

	browser := startBrowser(t)
	p := newUser(t, browser, "reader")
	log := p.watchConsole()
	p.navigate(srv.URL + "/d/" + room + "?token=" + url.QueryEscape(testserver.Token(t, "ada", "Ada", 0, []string{room})))
	p.waitSynced()
	p.waitFor("the whole document", fmt.Sprintf(`roomcastDoc.json().content.length === %d && roomcastDoc.editor.size() === %d && roomcastDoc.paintedAt > 0`,
		made.Paragraphs, made.Chars))
	at := eval[struct{ Loaded, Painted float64 }](p, `({loaded: roomcastDoc.loadedAt, painted: roomcastDoc.paintedAt})`)
	t.Logf("a %d-byte document of %d paragraphs (%d characters): synced editor %.0f ms after the page started, painted at %.0f ms",
		len(update), made.Paragraphs, made.Chars, at.Loaded, at.Painted)
	log.none(t, "reader")
}
