// The whiteboard page (/r/{room}): joins the room with the SDK, draws and
// shares strokes, shows who is online and where their cursors are, and
// brings late joiners up to date. The message kinds are in docs/SDK.md.

import { join } from "./roomcast.js";
import { Board, MAX_POINTS } from "./board.js";
import { colorFor, devToken, devUserId, initials, newId, rememberedName, rememberName, tokenClaims, ROOM_NAME } from "./identity.js";

const $ = (id) => document.getElementById(id);

const SEGMENT_INTERVAL = 80; // ms between live pieces of a stroke being drawn
const SYNC_TIMEOUT = 3000; // ms to wait for a sync-state before asking someone else
const SYNC_CHUNK_BYTES = 48 * 1024; // well under the server's 64 KiB frame limit
const MIN_STEP = 0.0015; // ignore pointer moves shorter than this (board widths)

const STATUS_TEXT = { connecting: "Connecting…", open: "Connected", reconnecting: "Reconnecting…", closed: "Disconnected" };

const roomName = decodeURIComponent(location.pathname.split("/").filter(Boolean).pop() ?? "");
$("room-name").textContent = roomName;
document.title = `${roomName} · roomcast`;

main().catch((err) => showProblem(`Could not open the room: ${err.message}`));

async function main() {
  if (!ROOM_NAME.test(roomName)) return showProblem("This is not a valid room name. Room names use letters, digits and . _ : -");
  const token = new URLSearchParams(location.search).get("token") ?? (await tokenFromName());
  if (!token) return;
  const claims = tokenClaims(token) ?? {};
  let devMode = true;
  // Before every reconnect: a dev server mints a fresh token (a restarted
  // dev server has a new secret); any other server gets the token we have.
  const getToken = async () => {
    if (!devMode || !claims.sub) return token;
    const fresh = await devToken(claims.sub, claims.name ?? claims.sub, roomName);
    devMode = fresh !== null;
    return fresh ?? token;
  };
  startRoom(join(location.origin, roomName, { token, getToken }), claims.sub ?? "");
}

// In -dev mode, asks for a display name and mints a token with it; otherwise
// explains that the join link needs a token.
async function tokenFromName() {
  if ((await devToken("probe", "probe", roomName)) === null) {
    showProblem("This room needs an invitation: open the join link you were given (it ends in ?token=…), or the page of the app that embeds this room.");
    return null;
  }
  const dialog = $("join-dialog");
  const input = $("join-name");
  input.value = rememberedName();
  dialog.addEventListener("cancel", (ev) => ev.preventDefault()); // Escape would leave a dead page
  dialog.showModal();
  const name = await new Promise((resolve) =>
    $("join-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const name = input.value.trim();
      if (name) resolve(name);
    }),
  );
  dialog.close();
  rememberName(name);
  return devToken(devUserId(name), name, roomName);
}

function showProblem(text) {
  $("problem-text").textContent = text;
  $("problem").hidden = false;
  setStatus("closed", "Not connected");
}

function setStatus(status, text = STATUS_TEXT[status]) {
  const el = $("status");
  el.dataset.status = status;
  el.textContent = text;
}

/** @param {import("./roomcast.js").Room} room @param {string} myId */
function startRoom(room, myId) {
  const canvas = $("board");
  const board = new Board(canvas, $("stage"));
  const myColor = colorFor(myId);
  const sync = lateJoin(room, board);
  // For debugging in the console and for the browser tests.
  window.whiteboard = { room, board };

  room.on("status", ({ status, code }) => {
    setStatus(status, status === "closed" && code !== 1000 ? `Disconnected (${code})` : undefined);
    $("stage").classList.toggle("offline", status !== "open");
  });
  room.on("welcome", ({ reconnect }) => {
    room.setPresence({ color: myColor, cursor: null });
    sync.start();
    if (reconnect) toast("Reconnected");
    renderPeople();
  });
  room.on("sync", renderPeople);
  room.on("update", renderPeople);
  room.on("join", ({ member }) => {
    if (member.id !== room.me?.id) toast(`${member.name} joined`);
    renderPeople();
  });
  room.on("leave", ({ member, reason }) => {
    toast(reason === "timeout" ? `${member.name} lost connection` : `${member.name} left`);
    renderPeople();
  });
  room.on("message", ({ data, from }) => {
    switch (data?.kind) {
      case "segment":
        if (validStroke(data)) board.extend(data.id, data.color, data.width, data.points);
        break;
      case "stroke":
        if (validStroke(data)) board.put({ ...pickStroke(data), done: true });
        break;
      case "erase":
        if (Array.isArray(data.ids)) board.remove(data.ids.filter((id) => typeof id === "string"));
        break;
      case "clear":
        board.clear();
        sync.sawClear();
        break;
      case "sync-request":
        if (data.responder === room.me?.id && from.conn) sync.answer(from.conn, data.sync);
        break;
      case "sync-state":
        if (data.to === room.conn) sync.receive(data);
        break;
    }
  });

  let shown = ""; // what the list shows, so cursor moves do not rebuild it
  function renderPeople() {
    renderCursors();
    const people = [...room.members.values()].sort((a, b) => a.since - b.since || a.name.localeCompare(b.name));
    const key = JSON.stringify(people.map((m) => [m.id, m.name, m.conns, m.meta?.color, m.id === room.me?.id]));
    if (key === shown) return;
    shown = key;
    $("people-count").textContent = `(${people.length})`;
    $("people").replaceChildren(...people.map((m) => personItem(m, m.id === room.me?.id)));
  }

  function renderCursors() {
    const cursors = [];
    for (const m of room.members.values()) {
      const c = m.meta?.cursor;
      if (m.id === room.me?.id || m.conns === 0 || !c || !Number.isFinite(c.x) || !Number.isFinite(c.y)) continue;
      const el = document.createElement("div");
      el.className = "cursor";
      el.style.left = `${c.x * 100}%`;
      el.style.top = `${c.y * 100}%`;
      el.style.setProperty("--c", safeColor(m.meta.color) ?? colorFor(m.id));
      el.classList.toggle("flip", c.x > 0.8); // keep the name inside the board
      el.textContent = m.name;
      cursors.push(el);
    }
    $("cursors").replaceChildren(...cursors);
  }

  drawing(room, board, canvas, myColor);
  $("invite").addEventListener("click", () => copyInvite());
}

/** Pointer input: draws locally and sends the stroke as it grows. */
function drawing(room, board, canvas, myColor) {
  let current = null; // the stroke under the pointer
  let pointer = null; // id of the pointer drawing it (a second finger does not)
  let sent = 0; // points of current already sent as segments
  let timer = 0;
  const mine = []; // ids of strokes this tab drew, for undo
  const send = (data) => room.publish(data).catch((err) => console.warn("roomcast: publish failed:", err.message));

  const tool = () => ({
    color: document.querySelector('input[name="color"]:checked').value,
    width: Number($("width").value),
  });

  function begin(point) {
    current = { id: newId(), ...tool(), points: [point], done: false };
    sent = 0;
    board.put(current);
    timer = setInterval(sendSegment, SEGMENT_INTERVAL);
  }

  // Offline, segments would only fill the SDK's queue: the finished stroke
  // is enough.
  function sendSegment() {
    if (!current || current.points.length === sent || room.status !== "open") return;
    const { id, color, width, points } = current;
    send({ kind: "segment", id, color, width, points: points.slice(sent) });
    sent = points.length;
  }

  function finish() {
    if (!current) return;
    clearInterval(timer);
    current.done = true;
    send({ kind: "stroke", ...pickStroke(current) });
    mine.push(current.id);
    const last = current.points.at(-1);
    current = null;
    return last;
  }

  function add(point) {
    const last = current.points.at(-1);
    if (Math.hypot(point[0] - last[0], point[1] - last[1]) < MIN_STEP) return;
    board.extend(current.id, current.color, current.width, [point]);
    // Long strokes continue as a new stroke so each fits in one message.
    if (current.points.length >= MAX_POINTS) begin(finish());
  }

  canvas.addEventListener("pointerdown", (ev) => {
    if (ev.button !== 0 || current) return;
    pointer = ev.pointerId;
    canvas.setPointerCapture(pointer);
    begin(board.toPoint(ev));
  });
  canvas.addEventListener("pointermove", (ev) => {
    const point = board.toPoint(ev);
    room.setPresence({ color: myColor, cursor: { x: point[0], y: point[1] } });
    if (!current || ev.pointerId !== pointer) return;
    for (const e of ev.getCoalescedEvents?.() ?? [ev]) add(board.toPoint(e));
  });
  for (const type of ["pointerup", "pointercancel"]) {
    canvas.addEventListener(type, (ev) => ev.pointerId === pointer && finish());
  }
  canvas.addEventListener("pointerleave", () => room.setPresence({ color: myColor, cursor: null }));

  function undo() {
    while (mine.length) {
      const id = mine.pop();
      if (!board.strokes.has(id)) continue;
      board.remove([id]);
      send({ kind: "erase", ids: [id] });
      return;
    }
  }
  $("undo").addEventListener("click", undo);
  document.addEventListener("keydown", (ev) => {
    if ((ev.ctrlKey || ev.metaKey) && ev.key === "z" && !ev.target.closest?.("input, textarea")) {
      ev.preventDefault();
      undo();
    }
  });
  $("clear").addEventListener("click", () => {
    board.clear();
    send({ kind: "clear" });
  });
  $("width").addEventListener("input", () => ($("width-value").textContent = $("width").value));
}

/**
 * Late joiners: after every welcome this tab asks the longest-present other
 * member, by name, for the finished strokes; if no answer comes in
 * SYNC_TIMEOUT it asks the next one. Only a tab that has the board (synced)
 * answers, in chunks under the frame limit.
 */
function lateJoin(room, board) {
  let synced = false;
  let asked = new Set();
  let request = null; // {id, timer, parts: [], clear: boolean}

  function start() {
    asked = new Set();
    ask();
  }

  function ask() {
    clearTimeout(request?.timer);
    const me = room.me;
    const candidates = [...room.members.values()]
      .filter((m) => m.conns > 0 && !asked.has(m.id) && (m.id !== me.id || m.conns > 1))
      .sort((a, b) => a.since - b.since || (a.id < b.id ? -1 : 1));
    if (!candidates.length) return done();
    const responder = candidates[0].id;
    asked.add(responder);
    request = { id: newId(), timer: setTimeout(ask, SYNC_TIMEOUT), parts: [], clear: false };
    room.publish({ kind: "sync-request", responder, sync: request.id }).catch(() => {});
  }

  function receive(data) {
    if (!request || data.sync !== request.id || !Number.isInteger(data.part) || !Array.isArray(data.strokes)) return;
    clearTimeout(request.timer);
    request.timer = setTimeout(ask, SYNC_TIMEOUT); // in case the other parts never come
    request.parts[data.part] = data.strokes;
    if (request.parts.filter(Boolean).length < data.parts) return;
    // After a clear, everything drawn since reached us live.
    if (!request.clear) board.underlay(request.parts.flat().filter(validStroke).map(pickStroke));
    done();
  }

  function done() {
    clearTimeout(request?.timer);
    request = null;
    synced = true;
    $("stage").dataset.synced = "true";
  }

  function answer(to, sync) {
    if (!synced) return;
    const chunks = [[]];
    let size = 0;
    for (const s of board.finished()) {
      const n = JSON.stringify(s).length;
      if (size + n > SYNC_CHUNK_BYTES && chunks.at(-1).length) {
        chunks.push([]);
        size = 0;
      }
      chunks.at(-1).push(s);
      size += n;
    }
    chunks.forEach((strokes, part) =>
      room.publish({ kind: "sync-state", to, sync, part, parts: chunks.length, strokes }).catch(() => {}),
    );
  }

  const sawClear = () => request && (request.clear = true);
  return { start, receive, answer, sawClear };
}

const COLOR = /^#[0-9a-fA-F]{6}$/;
const safeColor = (c) => (typeof c === "string" && COLOR.test(c) ? c : null);
const isPoint = (p) => Array.isArray(p) && p.length === 2 && p.every((v) => Number.isFinite(v) && v >= 0 && v <= 1);

// Data from other members is checked before it reaches the canvas.
function validStroke(s) {
  return (
    typeof s?.id === "string" && safeColor(s.color) !== null && Number.isFinite(s.width) && s.width > 0 && s.width <= 100 &&
    Array.isArray(s.points) && s.points.length > 0 && s.points.length <= 10000 && s.points.every(isPoint)
  );
}

const pickStroke = ({ id, color, width, points }) => ({ id, color, width, points });

/** @param {import("./roomcast.js").Member} m @param {boolean} isMe */
function personItem(m, isMe) {
  const li = document.createElement("li");
  li.className = "person";
  li.dataset.user = m.id;
  const away = m.conns === 0;
  li.classList.toggle("away", away);
  const avatar = document.createElement("span");
  avatar.className = "avatar";
  avatar.setAttribute("aria-hidden", "true");
  avatar.style.setProperty("--c", safeColor(m.meta?.color) ?? colorFor(m.id));
  avatar.textContent = initials(m.name || m.id);
  const name = document.createElement("span");
  name.className = "name";
  name.textContent = (m.name || m.id) + (isMe ? " (you)" : "");
  const detail = document.createElement("span");
  detail.className = "detail";
  detail.textContent = away ? "reconnecting…" : m.conns > 1 ? `${m.conns} tabs` : "";
  const who = document.createElement("span");
  who.className = "who";
  who.append(name, detail);
  li.append(avatar, who);
  return li;
}

function toast(text) {
  const el = document.createElement("div");
  el.className = "toast";
  el.textContent = text;
  $("toasts").append(el);
  setTimeout(() => el.remove(), 4000);
}

async function copyInvite() {
  const link = `${location.origin}/r/${roomName}`;
  try {
    await navigator.clipboard.writeText(link);
  } catch {
    // No clipboard API outside secure contexts: fall back to a selection.
    const area = document.createElement("textarea");
    area.value = link;
    document.body.append(area);
    area.select();
    const ok = document.execCommand("copy");
    area.remove();
    if (!ok) return toast(`Invite link: ${link}`);
  }
  toast("Invite link copied");
}
