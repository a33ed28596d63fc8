// roomcast client SDK: join a room over WebSocket, hold a live member map,
// publish messages and presence, and reconnect on its own, resuming the
// room's stream where it left off. Plain ES module without dependencies; the
// API is described in docs/SDK.md.

/**
 * @typedef {{id: string, name: string, role: "write" | "read", meta: Object, conns: number, since: number}} Member
 * @typedef {"connecting" | "open" | "reconnecting" | "closed"} Status
 * @typedef {{user: string, conn?: string}} Sender
 * @typedef {{type: "message", room: string, id: string, from: Sender, ts: number, data: any, seq?: number}} Message
 *   seq is set on stored messages only
 * @typedef {{epoch: string, seq: number}} Position
 * @typedef {{state: {seq: number, data: any} | null, messages: Message[], epoch: string | null, seq: number, reconnect: boolean, deleted: boolean}} Reset
 *   deleted: the room was deleted (DELETE /api/rooms/{room}) since this client last held it
 *
 * @typedef {Object} JoinOptions
 * @property {string} [token] token for the first connection
 * @property {() => string | Promise<string>} [getToken] called for a fresh token
 *   before every connection that has no `token` to use (so before each reconnect)
 * @property {boolean} [echo] receive your own publishes back (default false)
 * @property {number} [queueLimit] publishes held while not connected (default 100)
 * @property {number} [minDelay] first reconnect delay cap in ms (default 500)
 * @property {number} [maxDelay] largest reconnect delay in ms (default 20000)
 * @property {number} [presenceInterval] least ms between presence frames (default 50)
 * @property {number} [pingInterval] ms between keep-alive pings (default 25000)
 * @property {number} [maxMessageBytes] the server's frame limit (default 65536)
 * @property {"start" | Position} [since] where the first connection starts in
 *   the room's stream: "start" (the state and what follows, as a "reset"
 *   event), a position saved earlier, or nothing (live only). Later
 *   connections always resume from room.position.
 * @property {() => any} [getState] returns the room's state as this client
 *   holds it (a promise of it is fine); given, the SDK answers the server's
 *   state requests with it
 * @property {number} [maxStateBytes] the server's state limit (default 1 MiB)
 * @property {"full" | "count"} [presence] "count" for broadcast-style rooms:
 *   the client is a member for everyone else but holds only room.count
 *   (updated by "count" events, at most one a second), no member list and
 *   no join/leave/update events (default "full")
 */

const ROOM_NAME = /^[A-Za-z0-9._:-]{1,128}$/;
const MAX_META_BYTES = 1024;
// Close codes after which the SDK gives up instead of reconnecting are the
// 4xxx refusals it does not know how to recover from (4001, 4008, 4010 and
// 4029 it does).
const RECOVERABLE_4XXX = new Set([4001, 4008, 4010, 4029]);
const RESYNC = 4010; // the server could not keep the stream gapless: resume

const utf8 = new TextEncoder();
const byteLength = (s) => utf8.encode(s).length;

// A publish key: 128 random bits, base64url (22 characters; the server takes
// up to 64). getRandomValues works outside secure contexts too.
function newKey() {
  const b = crypto.getRandomValues(new Uint8Array(16));
  return btoa(String.fromCharCode(...b)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

/** An error with the server's (or the SDK's) error code, e.g. "rate_limited". */
export class RoomcastError extends Error {
  /** @param {string} code @param {string} message */
  constructor(code, message) {
    super(message);
    this.name = "RoomcastError";
    this.code = code;
  }
}

/**
 * Reconnect delay for the attempt-th consecutive failure (0-based), with full
 * jitter: uniform in [0, min(max, min * 2^attempt)).
 * @param {number} attempt
 * @param {number} [min]
 * @param {number} [max]
 * @param {() => number} [random]
 */
export function backoffDelay(attempt, min = 500, max = 20000, random = Math.random) {
  return Math.floor(random() * Math.min(max, min * 2 ** attempt));
}

/**
 * Applies a welcome, sync, join, update or leave frame to a member map and
 * returns the event it amounts to, or null when it changes nothing. A join
 * for a member already held is an update; a leave for an unknown member is
 * nothing. Applying the same frame twice is harmless.
 * @param {Map<string, Member>} members
 * @param {any} frame
 * @returns {string | null}
 */
export function applyPresence(members, frame) {
  switch (frame.type) {
    case "welcome":
    case "sync":
      members.clear();
      for (const m of frame.members ?? []) members.set(m.id, m);
      return frame.type;
    case "join":
    case "update": {
      const known = members.has(frame.member.id);
      members.set(frame.member.id, frame.member);
      return known ? "update" : "join";
    }
    case "leave":
      return members.delete(frame.member.id) ? "leave" : null;
  }
  return null;
}

/**
 * Joins a room; the connection starts right after the current task, so
 * listeners added now see every event, "connecting" included.
 * @param {string} url server base URL, e.g. location.origin or "https://rc.example.com"
 * @param {string} room room name
 * @param {JoinOptions} [options]
 */
export function join(url, room, options = {}) {
  return new Room(url, room, options);
}

export class Room {
  /** Live map of user id to Member, kept in step with the server. @type {Map<string, Member>} */
  members = new Map();
  /** The room's member count: members.size, or with presence "count" the server's count. */
  count = 0;
  /** @type {Status} */
  status = "connecting";
  /** This user as the server last described it. @type {Member | null} */
  me = null;
  /** Id of the current connection (from welcome). @type {string | null} */
  conn = null;

  #url;
  #opts;
  #token; // given token, used by the next connection only
  #lastToken; // used again when there is no getToken
  #ws = null;
  #handlers = new Map();
  #attempt = 0; // consecutive connections that ended without a welcome
  #retryTimer = 0;
  #pingTimer = 0;
  #lastFrameAt = 0;
  #welcomed = false;
  #left = false;
  #ref = 0;
  #queue = []; // stored publishes waiting for a connection (or for a replay to end)
  #inflight = new Map(); // ref -> publish sent, waiting for its ack
  #states = new Map(); // ref -> state frame sent, waiting for its ack
  #position = null; // {epoch, seq}: the last stored message given to the app
  #sentSince = null; // the since of the current connection: "start", a Position or null
  #ownSeqs = new Set(); // seqs of own unechoed publishes, acked ahead of #position
  #replay = null; // {state, messages, seq, until, reconnect} while a reset replay arrives
  #deleted = false; // the last 4010 said the room was deleted
  #stateWanted = 0; // seq of a state request waiting for #position to reach it
  #answering = false;
  #meta; // last meta given to setPresence, re-sent after every welcome
  #metaDirty = false;
  #metaTimer = 0;
  #metaSentAt = 0;
  #online = () => this.#retryNow();

  /** @param {string} url @param {string} room @param {JoinOptions} options */
  constructor(url, room, options) {
    if (!ROOM_NAME.test(room)) throw new RoomcastError("bad_request", `invalid room name ${JSON.stringify(room)}`);
    this.room = room;
    this.#url = url;
    this.#opts = {
      echo: false, queueLimit: 100, minDelay: 500, maxDelay: 20000,
      presenceInterval: 50, pingInterval: 25000, maxMessageBytes: 65536, maxStateBytes: 1 << 20, ...options,
    };
    this.#token = options.token;
    const since = options.since;
    if (since !== undefined && since !== "start" && !(typeof since?.epoch === "string" && Number.isSafeInteger(since?.seq) && since.seq >= 0)) {
      throw new RoomcastError("bad_request", `since is "start" or a position {epoch, seq}`);
    }
    if (options.presence !== undefined && options.presence !== "full" && options.presence !== "count") {
      throw new RoomcastError("bad_request", `presence is "full" or "count"`);
    }
    globalThis.addEventListener?.("online", this.#online);
    queueMicrotask(() => {
      this.#setStatus("connecting");
      this.#connect();
    });
  }

  /** The meta last passed to setPresence, else this user's meta from the server. */
  get meta() {
    return this.#meta ?? this.me?.meta ?? {};
  }

  /**
   * Where this client is in the room's stream: the epoch and the seq of the
   * last stored message it gave the app (null before the first welcome, or
   * when the server stores nothing). Reconnects resume from it.
   * @returns {Position | null}
   */
  get position() {
    return this.#position && { ...this.#position };
  }

  /**
   * Adds a listener; returns a function that removes it. Events: welcome, join,
   * leave, update, sync, message, reset, status, error.
   * @param {string} type
   * @param {(detail: any) => void} fn
   */
  on(type, fn) {
    if (!this.#handlers.has(type)) this.#handlers.set(type, new Set());
    this.#handlers.get(type).add(fn);
    return () => this.off(type, fn);
  }

  /** @param {string} type @param {(detail: any) => void} fn */
  off(type, fn) {
    this.#handlers.get(type)?.delete(fn);
  }

  /**
   * Sends data to everyone in the room. Resolves with the message id once the
   * server acknowledged it. A stored publish (the default) carries a key, so
   * the SDK can send it again after a reconnect and the server still delivers
   * it once; while not connected it waits in a bounded queue. An ephemeral
   * one is neither stored nor queued: it rejects with "offline" when there is
   * no connection to send it on. Rejects with a RoomcastError (too_large,
   * queue_full, offline, rate_limited, closed, ...).
   * @param {any} data any JSON value
   * @param {{echo?: boolean, ephemeral?: boolean, key?: string}} [options]
   * @returns {Promise<string>}
   */
  publish(data, { echo = this.#opts.echo, ephemeral = false, key = ephemeral ? undefined : newKey() } = {}) {
    if (this.#left) return Promise.reject(new RoomcastError("closed", "left the room"));
    const ref = String(++this.#ref);
    const text = JSON.stringify({ type: "publish", data, ref, ...(echo && { echo: true }), ...(ephemeral && { ephemeral: true }), ...(key !== undefined && { key }) });
    if (byteLength(text) > this.#opts.maxMessageBytes) {
      return Promise.reject(new RoomcastError("too_large", `message over ${this.#opts.maxMessageBytes} bytes`));
    }
    return new Promise((resolve, reject) => {
      const item = { ref, text, echo, ephemeral, resolve, reject, epoch: undefined };
      if (ephemeral) {
        if (this.status === "open") this.#send(item);
        else reject(new RoomcastError("offline", "not connected; ephemeral messages are not queued"));
      } else if (this.#ready()) this.#send(item);
      else if (this.#queue.length >= this.#opts.queueLimit) reject(new RoomcastError("queue_full", "too many messages waiting for the connection"));
      else this.#queue.push(item);
    });
  }

  /**
   * Stores data as the room's state: the effect of every stored message up to
   * seq (default: room.position.seq, what this client has applied). Newcomers
   * joining with since "start" get it instead of the messages it covers. Rejects
   * with a RoomcastError: stale_state (the room holds a later state), too_large
   * (over maxStateBytes), offline, closed.
   * @param {any} data any JSON value
   * @param {{seq?: number}} [options]
   * @returns {Promise<void>}
   */
  sendState(data, { seq = this.#position?.seq } = {}) {
    if (this.#left) return Promise.reject(new RoomcastError("closed", "left the room"));
    if (!this.#ready() || seq === undefined) return Promise.reject(new RoomcastError("offline", "not connected to a room that stores messages"));
    const json = JSON.stringify(data);
    if (json === undefined) return Promise.reject(new RoomcastError("bad_request", "state data must be a JSON value"));
    if (byteLength(json) > this.#opts.maxStateBytes) {
      return Promise.reject(new RoomcastError("too_large", `state over ${this.#opts.maxStateBytes} bytes`));
    }
    const ref = String(++this.#ref);
    return new Promise((resolve, reject) => {
      this.#states.set(ref, { resolve, reject });
      this.#ws.send(`{"type":"state","seq":${seq},"ref":"${ref}","data":${json}}`);
    });
  }

  /**
   * Replaces this user's presence meta (at most 1 KiB of JSON). Calls are
   * throttled to one frame per presenceInterval; the last value wins. The meta
   * is sent again after every reconnect.
   * @param {Object} meta
   */
  setPresence(meta) {
    if (byteLength(JSON.stringify(meta)) > MAX_META_BYTES) throw new RoomcastError("too_large", "presence meta over 1 KiB");
    this.#meta = meta;
    this.#metaDirty = true;
    this.#flushMeta();
  }

  /** Closes the connection for good; pending publishes are rejected. */
  leave() {
    if (this.#left) return;
    this.#left = true;
    globalThis.removeEventListener?.("online", this.#online);
    const ws = this.#ws;
    this.#ws = null;
    ws?.close(1000, "leave");
    this.#stopTimers();
    this.#fail(new RoomcastError("closed", "left the room"));
    this.members.clear();
    this.#setStatus("closed", { code: 1000, reason: "leave" });
  }

  #emit(type, detail) {
    for (const fn of this.#handlers.get(type) ?? []) {
      try {
        fn(detail);
      } catch (err) {
        console.error(`roomcast: ${type} listener failed`, err);
      }
    }
  }

  #setStatus(status, detail = {}) {
    this.status = status;
    this.#emit("status", { status, ...detail });
  }

  // Open, welcomed and not in the middle of a reset replay: stored publishes
  // go out directly (during a replay they queue, to follow what the app
  // does with the reset).
  #ready() {
    return this.status === "open" && !this.#replay;
  }

  #wsURL(token) {
    const u = new URL(this.#url, globalThis.location?.href);
    u.protocol = u.protocol === "https:" || u.protocol === "wss:" ? "wss:" : "ws:";
    u.pathname = u.pathname.replace(/\/$/, "") + "/ws/" + this.room;
    const q = new URLSearchParams();
    if (token) q.set("token", token);
    // Resume from where the app is; the first time, what it asked for.
    const p = this.#position ?? (typeof this.#opts.since === "object" ? this.#opts.since : null);
    this.#sentSince = p ? { ...p } : this.#opts.since === "start" ? "start" : null;
    if (this.#sentSince) q.set("since", p ? `${p.epoch}:${p.seq}` : "start");
    if (this.#opts.getState) q.set("state", "1");
    if (this.#opts.presence === "count") q.set("presence", "count");
    u.search = q.size ? "?" + q : "";
    u.hash = "";
    return u.href;
  }

  async #connect() {
    this.#retryTimer = 0;
    if (this.#left) return;
    let token = this.#token;
    this.#token = undefined;
    if (token === undefined && this.#opts.getToken) {
      try {
        token = await this.#opts.getToken();
      } catch (err) {
        this.#emit("error", { code: "token", message: String(err?.message ?? err) });
        return this.#retry({ code: 0, reason: "getToken failed" });
      }
      if (this.#left) return;
    } else if (token === undefined) {
      token = this.#lastToken; // no getToken: keep using the one token we have
    }
    this.#lastToken = token;
    const ws = new WebSocket(this.#wsURL(token));
    this.#ws = ws;
    ws.onmessage = (ev) => ws === this.#ws && this.#onFrame(ev.data);
    ws.onclose = (ev) => ws === this.#ws && this.#onClose(ev.code, ev.reason);
  }

  #onFrame(raw) {
    this.#lastFrameAt = Date.now();
    let f;
    try {
      f = JSON.parse(raw);
    } catch {
      return;
    }
    // A reset replay is the stored messages right after the welcome; any
    // other frame comes after it.
    if (this.#replay && !(f.type === "message" && f.seq <= this.#replay.until)) this.#endReplay();
    switch (f.type) {
      case "welcome":
        return this.#onWelcome(f);
      case "join":
      case "update":
      case "leave":
      case "sync": {
        const event = applyPresence(this.members, f);
        this.count = this.members.size;
        if (f.member && f.member.id === this.me?.id && f.type !== "leave") this.me = f.member;
        if (event) this.#emit(event, f);
        return;
      }
      case "count":
        this.count = f.count;
        return this.#emit("count", f);
      case "message":
        return this.#onMessage(f);
      case "ack": {
        const st = this.#states.get(f.ref);
        if (st) {
          this.#states.delete(f.ref);
          return st.resolve();
        }
        const item = this.#inflight.get(f.ref);
        this.#inflight.delete(f.ref);
        // An unechoed stored publish never comes back: its ack moves the
        // position instead. Not after an epoch change, where the ack of a
        // publish sent again may name the first one's seq in the old epoch.
        if (item && f.seq > 0 && !item.echo && item.epoch === this.#position?.epoch) this.#ownAcked(f.seq);
        return item?.resolve(f.id);
      }
      case "error": {
        const st = f.ref && this.#states.get(f.ref);
        if (st) {
          this.#states.delete(f.ref);
          return st.reject(new RoomcastError(f.code, f.message));
        }
        const item = f.ref && this.#inflight.get(f.ref);
        if (!item) return this.#emit("error", f);
        this.#inflight.delete(f.ref);
        return item.reject(new RoomcastError(f.code, f.message));
      }
      case "state_request":
        this.#stateWanted = Math.max(this.#stateWanted, Number(f.seq) || 0);
        return this.#answerState();
    }
  }

  #onMessage(f) {
    if (typeof f.seq === "number" && this.#replay) {
      const r = this.#replay;
      if (f.seq <= r.seq) return;
      r.seq = f.seq;
      r.messages.push(f);
      if (r.seq >= r.until) this.#endReplay();
      return;
    }
    if (typeof f.seq === "number" && this.#position) {
      // The server sends each stored message once and in order; a seq
      // already passed would be a duplicate.
      if (f.seq <= this.#position.seq) return;
      this.#advance(f.seq);
    }
    this.#emit("message", f);
    this.#answerState();
  }

  // Moves the position to seq, then past own acked seqs that follow it.
  #advance(seq) {
    const p = this.#position;
    p.seq = seq;
    for (const s of this.#ownSeqs) if (s <= p.seq) this.#ownSeqs.delete(s);
    while (this.#ownSeqs.delete(p.seq + 1)) p.seq++;
  }

  // The ack of an own unechoed message may come before or after the other
  // messages around it: move the position only once it is the next seq.
  #ownAcked(seq) {
    if (seq === this.#position.seq + 1) this.#advance(seq);
    else if (seq > this.#position.seq) this.#ownSeqs.add(seq);
    this.#answerState();
  }

  // Answers a state request once the app has applied what it asks for.
  async #answerState() {
    const get = this.#opts.getState;
    const ws = this.#ws;
    if (!get || !this.#stateWanted || this.#answering || !this.#ready() || !this.#position || this.#position.seq < this.#stateWanted) return;
    this.#stateWanted = 0;
    this.#answering = true;
    const seq = this.#position.seq; // the state will include at least this
    try {
      const data = await get();
      if (data !== undefined && ws === this.#ws && this.#ready()) await this.sendState(data, { seq });
    } catch (err) {
      // A later state is there already, or the connection dropped (the
      // server asks again): nothing to do.
      if (err?.code !== "stale_state" && err?.code !== "offline") this.#emit("error", { code: err?.code ?? "state", message: String(err?.message ?? err) });
    } finally {
      this.#answering = false;
    }
    this.#answerState(); // a request that came meanwhile
  }

  #onWelcome(f) {
    const reconnect = this.#welcomed;
    this.#welcomed = true;
    this.#attempt = 0;
    this.conn = f.conn;
    this.me = f.me;
    applyPresence(this.members, f);
    this.count = Number.isSafeInteger(f.count) ? f.count : this.members.size;
    this.status = "open";
    const seq = Number.isSafeInteger(f.seq) ? f.seq : 0;
    if (f.recovered === false || this.#sentSince === "start") {
      // Rebuild: the state, then the stored messages after it, which come
      // next; collected and given to the app as one reset event.
      const from = f.state?.seq ?? 0;
      this.#replay = { epoch: f.epoch ?? null, state: f.state ?? null, messages: [], seq: from, until: seq, reconnect };
      // The pong follows the replay, however short the history turns out.
      if (seq > from) this.#ws.send('{"type":"ping","ref":"replay"}');
    } else if (f.epoch) {
      // Resumed (the messages missed follow, as message events) or live.
      this.#position = { epoch: f.epoch, seq: f.recovered ? this.#sentSince.seq : seq };
    } else {
      this.#position = null; // the server stores nothing
    }
    if (this.#meta !== undefined) this.#metaDirty = true;
    this.#flushMeta();
    this.#pingTimer = setInterval(() => this.#keepAlive(), this.#opts.pingInterval);
    this.#emit("welcome", { ...f, reconnect });
    this.#setStatus("open");
    if (this.#replay && this.#replay.seq >= this.#replay.until) this.#endReplay();
    else if (!this.#replay) this.#flushQueue();
  }

  #endReplay() {
    const r = this.#replay;
    this.#replay = null;
    this.#position = r.epoch ? { epoch: r.epoch, seq: Math.max(r.seq, r.until) } : null;
    const deleted = this.#deleted;
    this.#deleted = false;
    this.#emit("reset", { state: r.state, messages: r.messages, epoch: r.epoch, seq: this.#position?.seq ?? 0, reconnect: r.reconnect, deleted });
    // After the app rebuilt (and maybe sent a state): what is waiting.
    if (this.status === "open") this.#flushQueue();
    this.#answerState();
  }

  // Unacknowledged publishes of the lost connection go first, then the queue.
  #flushQueue() {
    for (const item of this.#queue.splice(0)) this.#send(item);
  }

  #send(item) {
    item.epoch ??= this.#position?.epoch ?? null;
    this.#inflight.set(item.ref, item);
    this.#ws.send(item.text);
  }

  #flushMeta() {
    if (!this.#metaDirty || this.status !== "open" || this.#metaTimer) return;
    const wait = this.#metaSentAt + this.#opts.presenceInterval - Date.now();
    if (wait > 0) {
      this.#metaTimer = setTimeout(() => {
        this.#metaTimer = 0;
        this.#flushMeta();
      }, wait);
      return;
    }
    this.#metaDirty = false;
    this.#metaSentAt = Date.now();
    this.#ws.send(JSON.stringify({ type: "presence", meta: this.#meta }));
  }

  // A connection that stays silent through two ping intervals is dead even if
  // the browser has not noticed (half-open TCP): drop it and reconnect.
  #keepAlive() {
    if (Date.now() - this.#lastFrameAt > 2 * this.#opts.pingInterval) {
      const ws = this.#ws;
      this.#ws = null;
      ws?.close();
      this.#onClose(1006, "no answer to ping");
      return;
    }
    this.#ws?.send('{"type":"ping"}');
  }

  #onClose(code, reason) {
    // An operator deleted the room (not a lost history): the next reset
    // says so, and the app should not put its old content back.
    if (code === RESYNC) this.#deleted = String(reason).startsWith("room deleted");
    this.#ws = null;
    const wasOpen = this.status === "open";
    this.#stopTimers();
    // A replay cut short was never given to the app: the position stays.
    this.#replay = null;
    this.#ownSeqs.clear();
    this.#stateWanted = 0;
    const lost = new RoomcastError("offline", "the connection dropped before the server answered");
    for (const st of this.#states.values()) st.reject(lost);
    this.#states.clear();
    // The lost connection may or may not have delivered these: send stored
    // ones again with their key (the server keeps only the first), ahead of
    // anything queued since. Ephemeral ones are not worth sending late.
    const again = [];
    for (const item of this.#inflight.values()) (item.ephemeral ? item.reject(lost) : again.push(item));
    this.#queue.unshift(...again);
    this.#inflight.clear();
    if (this.#left) return;
    if ((code >= 4000 && !RECOVERABLE_4XXX.has(code)) || (code === 4001 && !this.#opts.getToken)) {
      this.#left = true;
      this.#fail(new RoomcastError("closed", `closed by the server (${code} ${reason})`));
      this.#setStatus("closed", { code, reason });
      return;
    }
    if (wasOpen && (code === 1001 || code === 4001 || code === RESYNC)) {
      // Server shutting down (another instance will take us), token
      // expired (getToken gives a fresh one) or the stream needs a resume:
      // no reason to wait.
      return this.#retry({ code, reason }, 0);
    }
    if (code === 4008 || code === 4029) this.#attempt = Math.max(this.#attempt, 5);
    this.#retry({ code, reason });
  }

  #retry(detail, delay = backoffDelay(this.#attempt++, this.#opts.minDelay, this.#opts.maxDelay)) {
    this.#setStatus("reconnecting", { ...detail, delay, attempt: this.#attempt });
    if (!this.#left) this.#retryTimer = setTimeout(() => this.#connect(), delay);
  }

  // The network came back: skip the rest of the backoff wait.
  #retryNow() {
    if (!this.#retryTimer) return;
    clearTimeout(this.#retryTimer);
    this.#connect();
  }

  #stopTimers() {
    clearTimeout(this.#retryTimer);
    clearTimeout(this.#metaTimer);
    clearInterval(this.#pingTimer);
    this.#retryTimer = this.#metaTimer = this.#pingTimer = 0;
  }

  #fail(err) {
    for (const item of [...this.#inflight.values(), ...this.#queue, ...this.#states.values()]) item.reject(err);
    this.#inflight.clear();
    this.#states.clear();
    this.#queue = [];
  }
}
