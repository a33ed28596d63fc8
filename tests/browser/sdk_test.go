package browser

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/roomcast/roomcast/tests/redisproc"
	"github.com/roomcast/roomcast/tests/testserver"
)

// The SDK's behaviour in the browser, against the real server. Each subtest
// runs a script in a page of the server's origin and gets back what it saw.
func TestSDK(t *testing.T) {
	srv := startDev(t, "")
	browser := startBrowser(t)
	p := newUser(t, browser, "sdk")
	p.navigate(srv.URL + "/")
	// A base URL where nothing listens: every connection fails before open.
	dead := "http://" + testserver.FreeAddr(t)
	token := func(user, room string) string { return devToken(t, srv.URL, user, user, room) }

	// script runs body as an async function with the SDK as rc. The page's
	// WebSocket is wrapped so a script can see the frames a room sends,
	// drop a room's connection, keep it from reconnecting, and make a
	// socket deaf (its frames never reach the SDK): sockets(room) lists the
	// room's sockets, newest last; blocked holds the rooms that may not
	// connect (their connections fail); sent(room) lists the frames sent.
	script := func(body string) string {
		return `(async () => { const rc = await import("/static/roomcast.js");
			const until = async (what, ok, ms = 5000) => {
				for (const end = Date.now() + ms; !ok(); await new Promise((r) => setTimeout(r, 20)))
					if (Date.now() > end) throw new Error("timed out waiting for " + what);
			};
			if (!window.rcSockets) {
				const Native = WebSocket;
				window.rcSockets = []; window.rcBlocked = new Set();
				window.WebSocket = class extends Native {
					constructor(url, ...rest) {
						const room = new URL(url).pathname.split("/").pop();
						super(rcBlocked.has(room) ? ` + js(strings.Replace(dead, "http:", "ws:", 1)) + ` : url, ...rest);
						Object.assign(this, { room, frames: [], deaf: false, onSend: null });
						rcSockets.push(this);
					}
					send(text) { this.frames.push(JSON.parse(text)); super.send(text); this.onSend?.(JSON.parse(text)); }
					set onmessage(fn) { super.onmessage = (ev) => this.deaf || fn(ev); }
					get onmessage() { return super.onmessage; }
				};
			}
			const sockets = (room) => rcSockets.filter((ws) => ws.room === room);
			const sent = (room) => sockets(room).flatMap((ws) => ws.frames);
			const blocked = rcBlocked;
			` + body + ` })()`
	}

	t.Run("backoff bounds", func(t *testing.T) {
		p.t = t
		res := eval[struct {
			Pure    []string
			Delays  []float64
			Caps    []float64
			Opened  bool
			Default float64
		}](p, script(`
			// Full jitter: uniform in [0, min(max, min*2^n)), capped at 20 s.
			const pure = [];
			for (let n = 0; n < 40; n++) {
				const cap = Math.min(20000, 500 * 2 ** n);
				const hi = rc.backoffDelay(n, 500, 20000, () => 0.999999), lo = rc.backoffDelay(n, 500, 20000, () => 0);
				if (lo !== 0 || hi >= cap || hi < cap - 1) pure.push("attempt " + n + ": " + lo + ".." + hi + " cap " + cap);
				for (let i = 0; i < 50; i++) { const d = rc.backoffDelay(n); if (d < 0 || d >= cap) pure.push("attempt " + n + ": " + d); }
			}
			// The real loop against a dead address, with small bounds to be quick.
			const room = rc.join(`+js(dead)+`, "backoff", { token: "x", minDelay: 40, maxDelay: 200 });
			const delays = [], caps = []; let opened = false;
			room.on("status", (s) => {
				if (s.status === "open") opened = true;
				if (s.status === "reconnecting") { caps.push(Math.min(200, 40 * 2 ** delays.length)); delays.push(s.delay); }
			});
			await until("8 reconnect attempts", () => delays.length >= 8);
			room.leave();
			// Default bounds: the first wait is under 0.5 s.
			const d = rc.join(`+js(dead)+`, "backoff", { token: "x" });
			let first = -1;
			d.on("status", (s) => { if (s.status === "reconnecting" && first < 0) first = s.delay; });
			await until("a first reconnect", () => first >= 0);
			d.leave();
			return { Pure: pure, Delays: delays, Caps: caps, Opened: opened, Default: first };
		`))
		if len(res.Pure) > 0 {
			t.Errorf("backoffDelay out of bounds: %v", res.Pure)
		}
		if res.Opened {
			t.Error("a room on a dead address reported open")
		}
		for i, d := range res.Delays {
			if d < 0 || d >= res.Caps[i] {
				t.Errorf("reconnect %d waited %vms, want [0, %v)", i, d, res.Caps[i])
			}
		}
		if res.Default < 0 || res.Default >= 500 {
			t.Errorf("first reconnect with default bounds waited %vms, want under 500", res.Default)
		}
	})

	t.Run("publishes queue while disconnected", func(t *testing.T) {
		p.t = t
		res := eval[struct {
			Full, TooBig, Left []string
			Acked              string
			Received           any
			Order              []float64
		}](p, script(`
			// Bounded: on a dead address the 4th publish is refused at once.
			const off = rc.join(`+js(dead)+`, "queue", { token: "x", queueLimit: 3 });
			const left = [];
			const pending = [1, 2, 3].map((n) => off.publish({ n }).catch((e) => left.push(e.code)));
			const full = [];
			await off.publish({ n: 4 }).catch((e) => full.push(e.code));
			off.leave();
			await Promise.all(pending);

			// Published before the welcome: held, then sent in order and acked.
			const watcher = rc.join(location.origin, "queue", { token: `+js(token("watcher", "queue"))+` });
			const received = [];
			watcher.on("message", (m) => received.push(m));
			await until("the watcher's welcome", () => watcher.status === "open");
			const room = rc.join(location.origin, "queue", { token: `+js(token("writer", "queue"))+` });
			const acks = [room.publish({ n: 1 }), room.publish({ n: 2 }), room.publish({ n: 3 })];
			const status = room.status;
			const ids = await Promise.all(acks);
			await until("3 messages", () => received.length === 3);
			const tooBig = [];
			await room.publish("x".repeat(70000)).catch((e) => tooBig.push(e.code));
			room.leave(); watcher.leave();
			return { Full: full, Left: left, TooBig: tooBig, Acked: status + " " + ids.every((id) => typeof id === "string" && id.length > 0),
				Received: received[0].from.user, Order: received.map((m) => m.data.n) };
		`))
		if fmt.Sprint(res.Full) != "[queue_full]" || fmt.Sprint(res.Left) != "[closed closed closed]" {
			t.Errorf("bounded queue: 4th publish %v, queued ones after leave %v; want [queue_full], [closed closed closed]", res.Full, res.Left)
		}
		if res.Acked != "connecting true" || res.Received != "writer" || fmt.Sprint(res.Order) != "[1 2 3]" {
			t.Errorf("publish before welcome: %q, from %v, order %v; want acked ids, from writer, [1 2 3]", res.Acked, res.Received, res.Order)
		}
		if fmt.Sprint(res.TooBig) != "[too_large]" {
			t.Errorf("publish over 64 KiB: %v, want [too_large]", res.TooBig)
		}
	})

	t.Run("count mode holds only the member count", func(t *testing.T) {
		p.t = t
		res := eval[struct {
			Welcome, Later float64
			Members        int
			Events         []string
		}](p, script(`
			const a = rc.join(location.origin, "audience", { token: `+js(token("host", "audience"))+` });
			await until("the host's welcome", () => a.status === "open");
			const v = rc.join(location.origin, "audience", { token: `+js(token("viewer", "audience"))+`, presence: "count" });
			const events = [];
			for (const type of ["join", "update", "leave", "sync", "count"]) v.on(type, () => events.push(type));
			await until("the viewer's welcome", () => v.status === "open");
			const welcome = v.count;
			const b = rc.join(location.origin, "audience", { token: `+js(token("guest", "audience"))+` });
			await until("a count of 3", () => v.count === 3, 5000);
			const out = { Welcome: welcome, Later: v.count, Members: v.members.size, Events: events };
			a.leave(); b.leave(); v.leave();
			let threw = false;
			try { rc.join(location.origin, "audience", { token: "x", presence: "some" }); } catch { threw = true; }
			if (!threw) out.Events.push("no error for presence: some");
			return out;
		`))
		if res.Welcome != 2 || res.Later != 3 || res.Members != 0 || strings.Join(res.Events, ",") != "count" {
			t.Fatalf("count mode: welcome count %v, later %v, %d members held, events %v; want 2, 3, 0, [count]", res.Welcome, res.Later, res.Members, res.Events)
		}
	})

	t.Run("member map is idempotent", func(t *testing.T) {
		p.t = t
		res := eval[struct {
			Synthetic []string
			Events    []string
			Conns     []float64
			After     []string
		}](p, script(`
			// The reducer: a join for a held member is an update, a second
			// leave is nothing, sync replaces everything.
			const m = new Map(), mem = (id, conns = 1) => ({ id, name: id, meta: {}, conns, since: 1 });
			const steps = [
				{ type: "welcome", members: [mem("a"), mem("b")] },
				{ type: "join", member: mem("a", 2) },
				{ type: "join", member: mem("c") },
				{ type: "leave", member: mem("c") },
				{ type: "leave", member: mem("c") },
				{ type: "update", member: mem("b", 0) },
				{ type: "sync", members: [mem("a")] },
			];
			const synthetic = steps.map((f) => rc.applyPresence(m, f) + ":" + [...m.keys()].sort().join(""));

			// The real thing: one user in two tabs is one member with conns 2.
			const watcher = rc.join(location.origin, "members", { token: `+js(token("watcher", "members"))+` });
			const events = [], conns = [];
			for (const type of ["join", "update", "leave"]) watcher.on(type, (f) => {
				if (f.member.id !== "dana") return;
				events.push(type); conns.push(watcher.members.get("dana")?.conns ?? 0);
			});
			await until("the watcher's welcome", () => watcher.status === "open");
			const tab1 = rc.join(location.origin, "members", { token: `+js(token("dana", "members"))+` });
			await until("dana's first tab", () => watcher.members.get("dana")?.conns === 1);
			const tab2 = rc.join(location.origin, "members", { token: `+js(token("dana", "members"))+` });
			await until("dana's second tab", () => watcher.members.get("dana")?.conns === 2);
			tab1.leave();
			await until("one tab left", () => watcher.members.get("dana")?.conns === 1);
			tab2.leave();
			await until("dana gone", () => !watcher.members.has("dana"));
			const after = [...watcher.members.keys()];
			watcher.leave();
			return { Synthetic: synthetic, Events: events, Conns: conns, After: after };
		`))
		want := "[welcome:ab update:ab join:abc leave:ab null:ab update:ab sync:a]"
		if fmt.Sprint(res.Synthetic) != want {
			t.Errorf("applyPresence steps %v, want %v", res.Synthetic, want)
		}
		if fmt.Sprint(res.Events) != "[join update update leave]" || fmt.Sprint(res.Conns) != "[1 2 1 0]" {
			t.Errorf("watcher saw %v with conns %v, want [join update update leave] with [1 2 1 0]", res.Events, res.Conns)
		}
		if fmt.Sprint(res.After) != "[watcher]" {
			t.Errorf("members at the end %v, want [watcher]", res.After)
		}
	})

	t.Run("presence is throttled and re-sent after reconnect", func(t *testing.T) {
		p.t = t
		res := eval[struct {
			Updates  int
			Last     any
			TooLarge string
		}](p, script(`
			const watcher = rc.join(location.origin, "presence", { token: `+js(token("watcher", "presence"))+` });
			await until("the watcher's welcome", () => watcher.status === "open");
			const room = rc.join(location.origin, "presence", { token: `+js(token("eve", "presence"))+` });
			await until("eve's welcome", () => room.status === "open");
			let updates = 0;
			watcher.on("update", (f) => { if (f.member.id === "eve") updates++; });
			for (let n = 0; n < 50; n++) room.setPresence({ n });
			await until("the last value", () => watcher.members.get("eve")?.meta.n === 49);
			await new Promise((r) => setTimeout(r, 200));
			let tooLarge = "";
			try { room.setPresence({ big: "x".repeat(2000) }); } catch (e) { tooLarge = e.code; }
			const last = watcher.members.get("eve").meta;
			room.leave(); watcher.leave();
			return { Updates: updates, Last: last, TooLarge: tooLarge };
		`))
		if res.Updates < 1 || res.Updates > 3 {
			t.Errorf("50 setPresence calls in a row gave %d updates, want 1..3", res.Updates)
		}
		if fmt.Sprint(res.Last) != "map[n:49]" || res.TooLarge != "too_large" {
			t.Errorf("last meta %v, oversized meta %q; want map[n:49], too_large", res.Last, res.TooLarge)
		}
	})

	t.Run("expired token is replaced from getToken", func(t *testing.T) {
		p.t = t
		// The test server's secret signs a token that expires in 2 s; the
		// server closes the socket with 4001 and the SDK asks getToken.
		short := testserver.Token(t, "frank", "Frank", 2*time.Second, nil)
		long := testserver.Token(t, "frank", "Frank", time.Hour, nil)
		res := eval[struct {
			Statuses []string
			Calls    int
			Meta     any
		}](p, script(`
			let calls = 0;
			const watcher = rc.join(location.origin, "expiry", { token: `+js(token("watcher", "expiry"))+` });
			const room = rc.join(location.origin, "expiry", { token: `+js(short)+`, getToken: () => { calls++; return `+js(long)+`; } });
			const statuses = [];
			room.on("status", (s) => statuses.push(s.status + (s.code ? " " + s.code : "") + (s.delay !== undefined ? " " + s.delay : "")));
			await until("the first welcome", () => room.status === "open");
			room.setPresence({ mood: "fine" });
			await until("4001 and back", () => calls === 1 && room.status === "open", 8000);
			await until("meta re-sent", () => watcher.members.get("frank")?.meta.mood === "fine");
			const meta = watcher.members.get("frank").meta;
			const seen = [...statuses];
			room.leave(); watcher.leave();
			return { Statuses: seen, Calls: calls, Meta: meta };
		`))
		if fmt.Sprint(res.Statuses) != "[connecting open reconnecting 4001 0 open]" || res.Calls != 1 {
			t.Errorf("statuses %q with %d getToken calls, want [connecting open reconnecting 4001 0 open] and 1", res.Statuses, res.Calls)
		}
		if fmt.Sprint(res.Meta) != "map[mood:fine]" {
			t.Errorf("meta after the reconnect %v, want map[mood:fine]", res.Meta)
		}
	})
	t.Run("resume after a reconnect gets what was missed, once", func(t *testing.T) {
		p.t = t
		res := eval[struct {
			Seqs, Live []float64
			Ephemeral  []string
			Resets     []string
			Recovered  []any
			Since      []string
			Position   string
			Offline    string
			Top        float64
		}](p, script(`
			const pub = rc.join(location.origin, "resume", { token: `+js(token("pub", "resume"))+` });
			const sub = rc.join(location.origin, "resume", { token: `+js(token("sub", "resume"))+`, since: "start", minDelay: 20, maxDelay: 100 });
			const got = [], ephemeral = [], resets = [], recovered = [];
			sub.on("message", (m) => m.seq ? got.push(m) : ephemeral.push(m.data.e));
			sub.on("reset", (r) => resets.push(JSON.stringify({ state: r.state, messages: r.messages.length, seq: r.seq })));
			sub.on("welcome", (w) => recovered.push(w.recovered ?? null));
			await until("both open", () => pub.status === "open" && sub.status === "open");
			let n = 0;
			const burst = (k) => Promise.all(Array.from({ length: k }, () => pub.publish({ n: ++n })));
			await burst(5);
			await pub.publish({ e: "seen" }, { ephemeral: true });
			await until("5 messages", () => got.length === 5 && ephemeral.length === 1);

			// Away: the connection drops and cannot come back for a while.
			blocked.add("resume");
			sockets("resume").at(-1).close();
			await until("reconnecting", () => sub.status === "reconnecting");
			let offline = "";
			await sub.publish({ e: "lost" }, { ephemeral: true }).catch((e) => (offline = e.code));
			await burst(10);
			await pub.publish({ e: "missed" }, { ephemeral: true });
			const away = sockets("resume").length;
			await until("a failed attempt", () => sockets("resume").length > away && sockets("resume").at(-1).readyState === WebSocket.CLOSED);
			blocked.delete("resume");
			await until("15 messages", () => got.length === 15);

			// Dropped again in the middle of a burst: frames on their way are
			// lost with the socket or arrive before the close; either way
			// each seq comes once.
			const more = burst(30);
			await until("20 messages", () => got.length >= 20);
			sockets("resume").at(-1).close();
			await more;
			await until("45 messages", () => got.length >= 45 && sub.status === "open");
			const live = await burst(3);
			await until("48 messages", () => got.length === 48);
			const pos = sub.position;
			pub.leave(); sub.leave();
			return { Seqs: got.map((m) => m.seq), Live: got.slice(-3).map((m) => m.data.n), Ephemeral: ephemeral, Resets: resets,
				Recovered: recovered, Since: sockets("resume").filter((ws) => ws.url.includes("since=")).map((ws) => new URL(ws.url).searchParams.get("since")),
				Position: pos.epoch.length > 0 ? "seq " + pos.seq : "no epoch", Offline: offline, Top: got.at(-1).seq };
		`))
		for i, seq := range res.Seqs {
			if seq != res.Seqs[0]+float64(i) {
				t.Fatalf("stored messages seen %v: want each seq once, in order, no gap", res.Seqs)
			}
		}
		if len(res.Seqs) != 48 || fmt.Sprint(res.Live) != "[46 47 48]" {
			t.Errorf("%d stored messages ending with %v, want 48 ending with [46 47 48]", len(res.Seqs), res.Live)
		}
		if fmt.Sprint(res.Ephemeral) != "[seen]" || res.Offline != "offline" {
			t.Errorf("ephemeral messages seen %v, and one published while away %q; want [seen] (none replayed) and offline", res.Ephemeral, res.Offline)
		}
		if len(res.Resets) != 1 || !strings.HasPrefix(res.Resets[0], `{"state":null,"messages":0,`) {
			t.Errorf("reset events %v, want one, empty, for since=start into a new room", res.Resets)
		}
		for _, r := range res.Recovered[1:] {
			if r != true {
				t.Errorf("welcomes after reconnects: recovered %v, want true each time", res.Recovered)
				break
			}
		}
		if res.Position != fmt.Sprintf("seq %v", res.Top) {
			t.Errorf("room.position %q, want the last seq %v", res.Position, res.Top)
		}
		if len(res.Since) < 3 || res.Since[0] != "start" {
			t.Errorf("since of the connections %v, want start, then positions", res.Since)
		}
	})

	t.Run("a keyed publish sent again after a reconnect is delivered once", func(t *testing.T) {
		p.t = t
		res := eval[struct {
			Watched []string
			ID      string
			Keys    []string
			Writer  []float64
			Pos     float64
		}](p, script(`
			const watcher = rc.join(location.origin, "keys", { token: `+js(token("watcher", "keys"))+` });
			const writer = rc.join(location.origin, "keys", { token: `+js(token("writer", "keys"))+`, minDelay: 20, maxDelay: 100 });
			const watched = [], writerSaw = [];
			watcher.on("message", (m) => watched.push(m.id + " " + JSON.stringify(m.data)));
			writer.on("message", (m) => writerSaw.push(m.seq));
			await until("both open", () => watcher.status === "open" && writer.status === "open");
			await writer.publish({ before: true });
			// The publish reaches the server, but its ack never reaches the
			// SDK: the socket goes deaf and closes right after sending it.
			const ws = sockets("keys").at(-1);
			ws.onSend = (f) => { if (f.type === "publish" && f.data.once) { ws.deaf = true; ws.close(); } };
			const id = await writer.publish({ once: true });
			await until("the watcher's copy", () => watched.length === 2);
			await writer.publish({ after: true });
			await until("the last one", () => watched.length === 3);
			const pos = writer.position.seq;
			watcher.leave(); writer.leave();
			return { Watched: watched, ID: id, Keys: sent("keys").filter((f) => f.data?.once).map((f) => f.key), Writer: writerSaw, Pos: pos };
		`))
		if len(res.Keys) != 2 || res.Keys[0] != res.Keys[1] || len(res.Keys[0]) < 16 {
			t.Fatalf("the publish was sent with keys %v, want twice with one key", res.Keys)
		}
		if len(res.Watched) != 3 || res.Watched[1] != res.ID+` {"once":true}` {
			t.Errorf("watcher saw %v; want the keyed message once, as %s", res.Watched, res.ID)
		}
		// The writer does not echo, but the resume replays its own message
		// it had no ack for; its position covers all three.
		if fmt.Sprint(res.Writer) != "[2]" || res.Pos != 3 {
			t.Errorf("writer saw stored messages %v and is at seq %v; want [2] (its own, replayed) and 3", res.Writer, res.Pos)
		}
	})

	t.Run("state requests are answered through getState", func(t *testing.T) {
		p.t = t
		// A state request once 5 stored messages follow the latest state.
		small := testserver.Start(t, testserver.Options{Args: []string{"-dev"}, Env: map[string]string{"ROOMCAST_HISTORY_SIZE": "10"}})
		tok := func(user string) string { return devToken(t, small.URL, user, user, "counter") }
		eval[chromedp.Void](p, script(`
			const keeper = rc.join(`+js(small.URL)+`, "counter", { token: `+js(tok("keeper"))+`, since: "start",
				getState: () => ({ sum: window.sum, calls: ++window.calls }) });
			window.sum = 0; window.calls = 0; window.keeperErrors = [];
			keeper.on("message", (m) => (window.sum += m.data.n));
			keeper.on("error", (e) => keeperErrors.push(e.code));
			const pub = rc.join(`+js(small.URL)+`, "counter", { token: `+js(tok("pub"))+` });
			await until("both open", () => keeper.status === "open" && pub.status === "open");
			for (let n = 1; n <= 7; n++) await pub.publish({ n });
			window.keeper = keeper; window.pub = pub;
		`))
		st := waitRoomState(t, small, "counter", 5)
		res := eval[struct {
			Calls  float64
			Stale  string
			Errors []string
			Reset  struct {
				State struct {
					Seq  float64
					Data struct{ Sum, Calls float64 }
				}
				Seqs []float64
				Sum  float64
				Seq  float64
			}
		}](p, script(`
			// A newcomer starts from the state and the messages after it.
			const late = rc.join(`+js(small.URL)+`, "counter", { token: `+js(tok("late"))+`, since: "start" });
			let reset = null;
			late.on("reset", (r) => (reset = { State: r.state, Seqs: r.messages.map((m) => m.seq), Seq: r.seq,
				Sum: r.state.data.sum + r.messages.reduce((a, m) => a + m.data.n, 0) }));
			await until("the reset", () => reset);
			// An older state is refused, and says so to whoever sent it.
			let stale = "";
			await keeper.sendState({ sum: 0 }, { seq: 1 }).catch((e) => (stale = e.code));
			late.leave(); keeper.leave(); pub.leave();
			return { Calls: calls, Stale: stale, Errors: keeperErrors, Reset: reset };
		`))
		var stored struct{ Sum, Calls float64 }
		if err := json.Unmarshal(st.State.Data, &stored); err != nil || stored.Calls < 1 || stored.Sum != float64(st.State.Seq*(st.State.Seq+1)/2) {
			t.Errorf("stored state %s at seq %d: want the sum of 1..seq, from getState", st.State.Data, st.State.Seq)
		}
		r := res.Reset
		if r.State.Seq < 5 || r.Sum != 28 || r.Seq != 7 || len(r.Seqs) != int(7-r.State.Seq) || len(r.Seqs) > 0 && r.Seqs[0] != r.State.Seq+1 {
			t.Errorf("the newcomer's reset %+v: want a state at 5 or later, then the messages after it, summing to 28 at seq 7", r)
		}
		if res.Stale != "stale_state" || len(res.Errors) > 0 {
			t.Errorf("sendState of an old seq: %q, error events %v; want stale_state and none", res.Stale, res.Errors)
		}
	})
	t.Run("own unechoed publishes move the position, on two instances", func(t *testing.T) {
		p.t = t
		// Two instances on one Redis: the writer's acks come from its
		// instance's script calls, others' messages through pub/sub, so an
		// ack may overtake a message stored before it.
		r := redisproc.Start(t)
		var inst []*testserver.Server
		for _, id := range []string{"inst-a", "inst-b"} {
			inst = append(inst, testserver.Start(t, testserver.Options{Env: map[string]string{"ROOMCAST_REDIS_URL": r.URL(), "ROOMCAST_INSTANCE_ID": id}}))
		}
		tok := func(user string) string { return testserver.Token(t, user, user, 0, nil) }
		res := eval[struct {
			Watched   []float64
			Writer    []string
			Own       int
			Pos, Top  float64
			Recovered any
			Replayed  int
		}](p, script(`
			const a = `+js(inst[0].URL)+`, b = `+js(inst[1].URL)+`;
			const watcher = rc.join(b, "busy", { token: `+js(tok("watcher"))+`, since: "start" });
			const writer = rc.join(a, "busy", { token: `+js(tok("writer"))+`, minDelay: 20, maxDelay: 100 });
			const tokens = { o1: `+js(tok("o1"))+`, o2: `+js(tok("o2"))+`, o3: `+js(tok("o3"))+` };
			const others = ["o1", "o2", "o3"].map((u) => rc.join(b, "busy", { token: tokens[u] }));
			const all = [watcher, writer, ...others];
			await until("all open", () => all.every((x) => x.status === "open"));
			const watched = [], writerGot = [];
			watcher.on("message", (m) => watched.push(m.seq));
			writer.on("message", (m) => writerGot.push(m.data.from + ":" + m.data.i));
			const sends = [];
			for (let i = 0; i < 30; i++) {
				sends.push(writer.publish({ from: "writer", i }));
				for (const [k, o] of others.entries()) sends.push(o.publish({ from: "o" + (k + 1), i }));
			}
			await Promise.all(sends);
			await until("120 stored messages", () => watched.length === 120);
			await until("the writer's position at the top", () => writer.position.seq === 120);
			// Resuming from an exact position replays nothing.
			let recovered, replayed = 0;
			writer.on("welcome", (w) => { recovered = w.recovered; });
			const before = writerGot.length;
			sockets("busy").filter((ws) => ws.url.startsWith(a.replace("http", "ws"))).at(-1).close();
			await until("the resume", () => recovered !== undefined && writer.status === "open");
			await others[0].publish({ from: "o1", i: "last" });
			await until("the last one", () => writerGot.at(-1) === "o1:last");
			replayed = writerGot.length - before - 1;
			const pos = writer.position.seq;
			for (const x of all) x.leave();
			return { Watched: watched, Writer: writerGot, Own: writerGot.filter((x) => x.startsWith("writer")).length,
				Pos: pos, Top: watched.at(-1), Recovered: recovered, Replayed: replayed };
		`))
		for i, seq := range res.Watched {
			if seq != float64(i+1) {
				t.Fatalf("watcher's seqs %v: want 1..120", res.Watched)
			}
		}
		seen := map[string]bool{}
		for _, m := range res.Writer {
			if seen[m] {
				t.Fatalf("the writer got %s twice: %v", m, res.Writer)
			}
			seen[m] = true
		}
		if len(res.Writer) != 91 || res.Own != 0 {
			t.Errorf("the writer got %d messages, %d of them its own; want the others' 90 and the last, none of its own", len(res.Writer), res.Own)
		}
		if res.Recovered != true || res.Replayed != 0 || res.Pos != 121 {
			t.Errorf("resume from the writer's position: recovered %v, %d replayed, then at seq %v; want true, 0, 121", res.Recovered, res.Replayed, res.Pos)
		}
	})
}
