// roomcast client SDK: join a room over WebSocket, hold a live member map,
// publish messages and presence, and reconnect on its own.
// Plain ES module without dependencies; the API is described in docs/SDK.md.

/**
 * @typedef {{id: string, name: string, meta: Object, conns: number, since: number}} Member
 * @typedef {"connecting" | "open" | "reconnecting" | "closed"} Status
 * @typedef {{user: string, conn?: string}} Sender
 * @typedef {{type: "message", room: string, id: string, from: Sender, ts: number, data: any}} Message
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
 */

const ROOM_NAME = /^[A-Za-z0-9._:-]{1,128}$/;
const MAX_META_BYTES = 1024;
// Close codes after which the SDK gives up instead of reconnecting are the
// 4xxx refusals it does not know how to recover from (4001, 4008 and 4029 it
// does).
const RECOVERABLE_4XXX = new Set([4001, 4008, 4029]);

const utf8 = new TextEncoder();
const byteLength = (s) => utf8.encode(s).length;

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
      for (const m of frame.members) members.set(m.id, m);
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
  #queue = []; // publishes waiting for a connection
  #inflight = new Map(); // ref -> publish sent, waiting for its ack
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
      presenceInterval: 50, pingInterval: 25000, maxMessageBytes: 65536, ...options,
    };
    this.#token = options.token;
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
   * Adds a listener; returns a function that removes it. Events: welcome, join,
   * leave, update, sync, message, status, error.
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
   * server acknowledged it; while not connected the publish waits in a bounded
   * queue. Rejects with a RoomcastError (too_large, queue_full, rate_limited,
   * closed, ...).
   * @param {any} data any JSON value
   * @param {{echo?: boolean}} [options]
   * @returns {Promise<string>}
   */
  publish(data, { echo = this.#opts.echo } = {}) {
    if (this.#left) return Promise.reject(new RoomcastError("closed", "left the room"));
    const ref = String(++this.#ref);
    const text = JSON.stringify({ type: "publish", data, ref, ...(echo && { echo: true }) });
    if (byteLength(text) > this.#opts.maxMessageBytes) {
      return Promise.reject(new RoomcastError("too_large", `message over ${this.#opts.maxMessageBytes} bytes`));
    }
    return new Promise((resolve, reject) => {
      const item = { ref, text, resolve, reject };
      if (this.status === "open") this.#send(item);
      else if (this.#queue.length >= this.#opts.queueLimit) reject(new RoomcastError("queue_full", "too many messages waiting for the connection"));
      else this.#queue.push(item);
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

  #wsURL(token) {
    const u = new URL(this.#url, globalThis.location?.href);
    u.protocol = u.protocol === "https:" || u.protocol === "wss:" ? "wss:" : "ws:";
    u.pathname = u.pathname.replace(/\/$/, "") + "/ws/" + this.room;
    u.search = token ? "?token=" + encodeURIComponent(token) : "";
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
    switch (f.type) {
      case "welcome":
        return this.#onWelcome(f);
      case "join":
      case "update":
      case "leave":
      case "sync": {
        const event = applyPresence(this.members, f);
        if (f.member && f.member.id === this.me?.id && f.type !== "leave") this.me = f.member;
        if (event) this.#emit(event, f);
        return;
      }
      case "message":
        return this.#emit("message", f);
      case "ack": {
        const item = this.#inflight.get(f.ref);
        this.#inflight.delete(f.ref);
        return item?.resolve(f.id);
      }
      case "error": {
        const item = f.ref && this.#inflight.get(f.ref);
        if (!item) return this.#emit("error", f);
        this.#inflight.delete(f.ref);
        return item.reject(new RoomcastError(f.code, f.message));
      }
    }
  }

  #onWelcome(f) {
    const reconnect = this.#welcomed;
    this.#welcomed = true;
    this.#attempt = 0;
    this.conn = f.conn;
    this.me = f.me;
    applyPresence(this.members, f);
    this.status = "open";
    // Unacknowledged publishes of the lost connection go first, then the queue.
    for (const item of this.#queue.splice(0)) this.#send(item);
    if (this.#meta !== undefined) this.#metaDirty = true;
    this.#flushMeta();
    this.#pingTimer = setInterval(() => this.#keepAlive(), this.#opts.pingInterval);
    this.#emit("welcome", { ...f, reconnect });
    this.#setStatus("open");
  }

  #send(item) {
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
    this.#ws = null;
    const wasOpen = this.status === "open";
    this.#stopTimers();
    // The lost connection may or may not have delivered these: send them
    // again (at least once), ahead of anything queued since.
    this.#queue.unshift(...this.#inflight.values());
    this.#inflight.clear();
    if (this.#left) return;
    if ((code >= 4000 && !RECOVERABLE_4XXX.has(code)) || (code === 4001 && !this.#opts.getToken)) {
      this.#left = true;
      this.#fail(new RoomcastError("closed", `closed by the server (${code} ${reason})`));
      this.#setStatus("closed", { code, reason });
      return;
    }
    if (wasOpen && (code === 1001 || code === 4001)) {
      // Server shutting down (another instance will take us) or token
      // expired (getToken gives a fresh one): no reason to wait.
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
    for (const item of [...this.#inflight.values(), ...this.#queue]) item.reject(err);
    this.#inflight.clear();
    this.#queue = [];
  }
}
