package browser

import (
	"fmt"
	"testing"
	"time"

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

	// script runs body as an async function with the SDK as rc.
	script := func(body string) string {
		return `(async () => { const rc = await import("/static/roomcast.js");
			const until = async (what, ok, ms = 5000) => {
				for (const end = Date.now() + ms; !ok(); await new Promise((r) => setTimeout(r, 20)))
					if (Date.now() > end) throw new Error("timed out waiting for " + what);
			};
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
}
