// Package browser tests the whiteboard, the landing page and the JavaScript
// SDK in real headless Chromium, driven with chromedp, against the real
// roomcast binary started with -dev.
package browser

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/chromedp"

	"github.com/roomcast/roomcast/tests/testserver"
)

const (
	defaultChromium = "/usr/bin/chromium"
	actionTimeout   = 20 * time.Second
	waitTimeout     = 15 * time.Second
)

// startDev runs the roomcast binary with -dev (dev tokens, in-memory
// backends) on addr, or on a free port when addr is empty.
func startDev(t *testing.T, addr string) *testserver.Server {
	t.Helper()
	return testserver.Start(t, testserver.Options{Args: []string{"-dev"}, Addr: addr})
}

// startBrowser starts one headless Chromium with a fresh profile for the
// test. Each user of the test gets its own browser context in it (see
// newUser), so users share no storage or cookies.
func startBrowser(t *testing.T) context.Context {
	t.Helper()
	path := os.Getenv("ROOMCAST_CHROMIUM")
	if path == "" {
		path = defaultChromium
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("headless Chromium not found at %s (%v): install it with `apt-get update && apt-get install -y chromium`; "+
			"the browser tests must run, not skip", path, err)
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.WindowSize(1100, 720),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		// Every user's tab must keep its timers and sockets running at full
		// speed although only one of them is in front.
		chromedp.Flag("disable-background-timer-throttling", true),
		chromedp.Flag("disable-backgrounding-occluded-windows", true),
		chromedp.Flag("disable-renderer-backgrounding", true),
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(allocCtx)
	if err := chromedp.Do(ctx); err != nil {
		cancel()
		cancelAlloc()
		t.Fatalf("start chromium: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
	})
	return ctx
}

// page is one user's tab, in a browser context of its own.
type page struct {
	t      *testing.T
	name   string
	ctx    context.Context
	cancel context.CancelFunc
	closed bool
}

func newUser(t *testing.T, browser context.Context, name string) *page {
	t.Helper()
	ctx, cancel := chromedp.NewContext(browser, chromedp.WithNewBrowserContext())
	p := &page{t: t, name: name, ctx: ctx, cancel: cancel}
	t.Cleanup(p.close)
	// The first run opens the tab; it must not have a deadline.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("%s: open tab: %v", name, err)
	}
	return p
}

// close closes the tab and its browser context, as a user closing the window.
func (p *page) close() {
	if !p.closed {
		p.closed = true
		p.cancel()
	}
}

func (p *page) do(steps ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, actionTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		p.t.Fatalf("%s: %v\n%s", p.name, err, p.state())
	}
}

// eval runs a JavaScript expression (promises are awaited) and decodes its value.
func eval[T any](p *page, expr string) T {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, actionTimeout)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		p.t.Fatalf("%s: evaluate %.80q: %v", p.name, expr, err)
	}
	return v
}

// waitFor polls a JavaScript expression until it is truthy. A poll does not
// survive a navigation, so one that the page navigated away from starts over.
func (p *page) waitFor(what, expr string) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, waitTimeout)
	defer cancel()
	for {
		_, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingInterval(50*time.Millisecond)))
		if err == nil {
			return
		}
		if ctx.Err() != nil || errors.Is(err, chromedp.ErrPollingTimeout) {
			p.t.Fatalf("%s: waiting for %s: %v\n%s", p.name, what, err, p.state())
		}
		time.Sleep(50 * time.Millisecond) // navigating: poll the new document
	}
}

// state describes what the page shows, for failure messages.
func (p *page) state() string {
	ctx, cancel := context.WithTimeout(p.ctx, 3*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](`JSON.stringify({
		url: location.href,
		status: document.getElementById("status")?.textContent,
		people: [...document.querySelectorAll("#people .name")].map((e) => e.textContent),
		strokes: window.whiteboard ? whiteboard.board.strokes.size : null,
		problem: document.getElementById("problem")?.hidden === false ? document.getElementById("problem-text").textContent : null,
	})`))
	if err != nil {
		return fmt.Sprintf("(page state unavailable: %v)", err)
	}
	return p.name + " page: " + s
}

func (p *page) navigate(u string) {
	p.t.Helper()
	p.do(chromedp.Navigate(u))
}

// openRoom opens the join URL and waits until the whiteboard is connected.
func (p *page) openRoom(joinURL string) {
	p.t.Helper()
	p.navigate(joinURL)
	p.waitConnected()
}

func (p *page) waitConnected() {
	p.t.Helper()
	p.waitFor("the connected status", `document.getElementById("status").dataset.status === "open" && window.whiteboard?.room.status === "open"`)
}

// waitPeople waits until the sidebar lists exactly these names (the own one
// with " (you)"), in any order.
func (p *page) waitPeople(names ...string) {
	p.t.Helper()
	want, _ := json.Marshal(names)
	p.waitFor(fmt.Sprintf("sidebar %v", names), fmt.Sprintf(`(() => {
		const got = [...document.querySelectorAll("#people .name")].map((e) => e.textContent).sort();
		return JSON.stringify(got) === JSON.stringify(%s.sort());
	})()`, want))
}

// draw drags the mouse across the canvas through pts (board coordinates,
// 0..1) with real input events, as a user drawing one stroke.
func (p *page) draw(pts [][2]float64) {
	p.t.Helper()
	press, release := p.strokeSteps(pts)
	p.do(append(press, release)...)
}

// strokeSteps are the input events of drawing pts: pressing the button and
// moving through the points, then releasing it, which finishes the stroke.
func (p *page) strokeSteps(pts [][2]float64) (press []chromedp.Action[chromedp.Void], release chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	r := eval[struct{ X, Y, W, H float64 }](p, `(() => {
		const r = document.getElementById("board").getBoundingClientRect();
		return {X: r.left, Y: r.top, W: r.width, H: r.height};
	})()`)
	at := func(pt [2]float64) (float64, float64) { return r.X + pt[0]*r.W, r.Y + pt[1]*r.H }
	pressed := func(e *input.DispatchMouseEventParams) { e.Buttons = 1 }
	x, y := at(pts[0])
	press = []chromedp.Action[chromedp.Void]{
		chromedp.MouseEvent(input.DispatchMouseEventTypeMouseMoved, x, y),
		chromedp.MouseEvent(input.DispatchMouseEventTypeMousePressed, x, y, chromedp.ButtonLeft, chromedp.ClickCount(1), pressed),
	}
	for _, pt := range pts[1:] {
		x, y = at(pt)
		press = append(press, chromedp.MouseEvent(input.DispatchMouseEventTypeMouseMoved, x, y, chromedp.ButtonLeft, pressed))
	}
	return press, chromedp.MouseEvent(input.DispatchMouseEventTypeMouseReleased, x, y, chromedp.ButtonLeft, chromedp.ClickCount(1))
}

// wave is a stroke path across the board: n+1 points of a sine wave.
func wave(n int, y0, amp, phase float64) [][2]float64 {
	pts := make([][2]float64, 0, n+1)
	for i := 0; i <= n; i++ {
		f := float64(i) / float64(n)
		pts = append(pts, [2]float64{0.1 + 0.8*f, y0 + amp*math.Sin(2*math.Pi*f+phase)})
	}
	return pts
}

// strokeSummary is what two boards must agree on.
type strokeSummary struct {
	ID     string `json:"id"`
	Color  string `json:"color"`
	Points int    `json:"points"`
	Done   bool   `json:"done"`
}

func (p *page) strokes() []strokeSummary {
	p.t.Helper()
	return eval[[]strokeSummary](p, `[...whiteboard.board.strokes.values()].map((s) => ({id: s.id, color: s.color, points: s.points.length, done: s.done}))`)
}

// inkJS is true when the canvas shows the colour of stroke s around most of
// its points: the board is checked in pixels, not only in its model.
const inkJS = `((s) => {
	const c = whiteboard.board.canvas;
	const ctx = c.getContext("2d");
	const want = [1, 3, 5].map((i) => parseInt(s.color.slice(i, i + 2), 16));
	let inked = 0;
	for (const [x, y] of s.points) {
		const d = ctx.getImageData(Math.round(x * c.width) - 2, Math.round(y * c.height) - 2, 5, 5).data;
		for (let i = 0; i < d.length; i += 4) {
			if (Math.abs(d[i] - want[0]) + Math.abs(d[i + 1] - want[1]) + Math.abs(d[i + 2] - want[2]) < 60) { inked++; break; }
		}
	}
	return inked >= 0.9 * s.points.length;
})`

// waitStrokeShown waits until the board has the finished stroke id with n
// points and the canvas shows it.
func (p *page) waitStrokeShown(id string, n int) {
	p.t.Helper()
	p.waitFor(fmt.Sprintf("stroke %s with %d points on the canvas", id, n), fmt.Sprintf(`(() => {
		const s = whiteboard.board.strokes.get(%q);
		return !!s && s.done && s.points.length === %d && %s(s);
	})()`, id, n, inkJS))
}

// allStoredJS is true when every stroke on the board is finished and has
// its place in the room's order (it is stored, not only drawn here).
const allStoredJS = `[...whiteboard.board.strokes.values()].every((s) => s.done && s.order !== Infinity)`

// publishStrokes publishes n finished strokes of pts points each, with ids
// prefix-0, prefix-1, …, as stored messages from p's room: what a user
// drawing them would send, quicker than drawing them. They lie in a band
// from y to y+0.2.
func publishStrokes(p *page, prefix string, n, pts int, y float64) {
	p.t.Helper()
	eval[chromedp.Void](p, fmt.Sprintf(`(async () => {
		const r = (v) => Math.round(v * 1e4) / 1e4;
		const sent = [];
		for (let i = 0; i < %d; i++) {
			const points = [];
			for (let j = 0; j < %d; j++) points.push([r(0.05 + 0.9 * j / (%[2]d - 1)), r(%f + 0.2 * ((i * 0.0137 + j * 0.0007) %% 1))]);
			sent.push(whiteboard.room.publish({kind: "stroke", id: %q + "-" + i, color: "#7b2cbf", width: 2, points}, {echo: true}));
		}
		await Promise.all(sent);
	})()`, n, pts, y, prefix))
}

// stateBody is GET /api/rooms/{room}/state.
type stateBody struct {
	Epoch string
	Seq   uint64
	State *struct {
		Seq  uint64
		Data json.RawMessage
	}
}

// roomState reads the room's stored state with the API key.
func roomState(t *testing.T, srv *testserver.Server, room string) stateBody {
	t.Helper()
	req, err := http.NewRequest("GET", srv.URL+"/api/rooms/"+room+"/state", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+testserver.APIKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("room state: %v", err)
	}
	defer resp.Body.Close()
	var body stateBody
	if resp.StatusCode != 200 || json.NewDecoder(resp.Body).Decode(&body) != nil {
		t.Fatalf("room state: HTTP %d", resp.StatusCode)
	}
	return body
}

// waitRoomState waits until the room's stored state covers seq minSeq.
func waitRoomState(t *testing.T, srv *testserver.Server, room string, minSeq uint64) stateBody {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		st := roomState(t, srv, room)
		if st.State != nil && st.State.Seq >= minSeq {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("the state of room %s: %+v; want one at seq %d or later", room, st, minSeq)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// canvas returns the pixels of p's board canvas.
func (p *page) canvas() image.Image {
	p.t.Helper()
	url := eval[string](p, `whiteboard.board.canvas.toDataURL("image/png")`)
	b, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(url, "data:image/png;base64,"))
	if err != nil {
		p.t.Fatalf("%s: canvas data URL: %v", p.name, err)
	}
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		p.t.Fatalf("%s: canvas PNG: %v", p.name, err)
	}
	return img
}

// samePixels fails the test unless every page's canvas matches the first
// one's pixel for pixel; the canvases go to tests/artifacts when not.
func samePixels(t *testing.T, what string, pages ...*page) {
	t.Helper()
	want := pages[0].canvas()
	for _, p := range pages[1:] {
		got := p.canvas()
		if got.Bounds() != want.Bounds() {
			t.Fatalf("%s: %s's canvas is %v, %s's %v", what, p.name, got.Bounds(), pages[0].name, want.Bounds())
		}
		diff := 0
		b := want.Bounds()
		for y := b.Min.Y; y < b.Max.Y; y++ {
			for x := b.Min.X; x < b.Max.X; x++ {
				if color.RGBAModel.Convert(got.At(x, y)) != color.RGBAModel.Convert(want.At(x, y)) {
					diff++
				}
			}
		}
		if diff > 0 {
			for _, q := range []struct {
				p   *page
				img image.Image
			}{{pages[0], want}, {p, got}} {
				var buf bytes.Buffer
				_ = png.Encode(&buf, q.img)
				file := filepath.Join(artifactDir(t), strings.ReplaceAll(t.Name(), "/", "_")+"-"+q.p.name+".png")
				_ = os.WriteFile(file, buf.Bytes(), 0o644)
			}
			t.Fatalf("%s: %d of %d pixels differ between %s's and %s's canvas (both in tests/artifacts)", what, diff, b.Dx()*b.Dy(), pages[0].name, p.name)
		}
	}
}

// devToken mints a token with the server's /dev/token.
func devToken(t *testing.T, base, user, name, room string) string {
	t.Helper()
	q := url.Values{"user": {user}, "name": {name}, "room": {room}}
	resp, err := http.Get(base + "/dev/token?" + q.Encode())
	if err != nil {
		t.Fatalf("dev token: %v", err)
	}
	defer resp.Body.Close()
	var body struct{ Token string }
	if resp.StatusCode != 200 || json.NewDecoder(resp.Body).Decode(&body) != nil || body.Token == "" {
		t.Fatalf("dev token: HTTP %d", resp.StatusCode)
	}
	return body.Token
}

func joinURL(t *testing.T, srv *testserver.Server, room, user, name string) string {
	return srv.URL + "/r/" + room + "?token=" + url.QueryEscape(devToken(t, srv.URL, user, name, room))
}

// artifactDir is tests/artifacts, where screenshots go (not committed).
func artifactDir(t *testing.T) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	dir := filepath.Join(filepath.Dir(file), "..", "artifacts")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func (p *page) screenshot(file string) []byte {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, actionTimeout)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		p.t.Fatalf("%s: screenshot: %v", p.name, err)
	}
	path := filepath.Join(artifactDir(p.t), file)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		p.t.Fatal(err)
	}
	p.t.Logf("screenshot: %s", path)
	return png
}

// js quotes a Go value as a JavaScript literal.
func js(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if strings.Contains(v, s) {
			return true
		}
	}
	return false
}
