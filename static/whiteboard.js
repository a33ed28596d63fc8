// The whiteboard page (/r/{room}): joins the room with the SDK, draws and
// shares strokes, shows who is online and where their cursors are. The
// board lives in the room's stream: finished strokes, erases and clears are
// stored messages, a tab starts from the room's state and what followed it,
// and answers the server's state requests with its board. The message kinds
// and the state format are in docs/SDK.md. The History button lists the
// room's stored states and restores one as a new edit; a view-only token
// (or ?view=1) turns drawing off.

import { join } from "./roomcast.js";
import { Board, MAX_POINTS } from "./board.js";
import { colorFor, newId } from "./identity.js";
import { followPeople, pageRoom, pageToken, safeColor, setStatus, setupInvite, showPeople, showProblem, sortedPeople, toast } from "./page.js";
import { setupHistory } from "./history.js";
import { changeNoter, noteRoom } from "./recent.js";

const $ = (id) => document.getElementById(id);

const SEGMENT_INTERVAL = 80; // ms between live pieces of a stroke being drawn
const MIN_STEP = 0.0015; // ignore pointer moves shorter than this (board widths)
const STATE_VERSION = 1;
const RETRIES = 5; // stored messages refused as unavailable or rate_limited are sent again
const RESTORE_CHUNK = 48 * 1024; // bytes of strokes per restore message, well inside a message

const roomName = pageRoom("roomcast");

main().catch((err) => showProblem(`Could not open the room: ${err.message}`));

async function main() {
  const page = await pageToken(roomName, { what: "room" });
  if (!page) return;
  const { token, claims, getToken, viewOnly } = page;
  startRoom(location.origin, roomName, { token, getToken }, claims.sub ?? "", viewOnly);
}

function startRoom(url, name, options, myId, viewOnly) {
  const canvas = $("board");
  const board = new Board(canvas, $("stage"));
  const myColor = colorFor(myId);
  noteRoom(name, "board");
  const changed = changeNoter(name, "board");
  // The board starts from the room's state and the stored messages after it,
  // and is what this tab gives when the server asks for the room's state.
  const room = join(url, name, { ...options, since: "start", getState: () => boardState(board) });
  // For debugging in the console and for the browser tests.
  window.whiteboard = { room, board, viewOnly };

  room.on("status", ({ status, code }) => {
    setStatus(status, status === "closed" && code !== 1000 ? `Disconnected (${code})` : undefined);
    $("stage").classList.toggle("offline", status !== "open");
  });
  room.on("welcome", ({ reconnect }) => {
    room.setPresence({ color: myColor, cursor: null });
    if (reconnect) toast("Reconnected");
    renderPeople();
  });
  room.on("reset", ({ state, messages, deleted }) => {
    if (!deleted && !state && !messages.length && board.hasStored()) {
      // The room has nothing although this tab holds a board: the server
      // lost it (a store restarted empty). Keep the board and give it back.
      // After an operator's DELETE the board goes, as the operator meant.
      board.load(board.stored());
      room.sendState(boardState(board)).catch((err) => console.warn("roomcast: state not kept:", err.message));
    } else {
      board.batch(() => {
        board.load(strokesOfState(state?.data));
        for (const m of messages) applyMessage(board, m);
      });
    }
    $("stage").dataset.synced = "true";
  });
  followPeople(room, renderPeople);
  room.on("message", (m) => {
    applyMessage(board, m);
    if (m.seq !== undefined) changed();
  });

  let shown = ""; // what the list shows, so cursor moves do not rebuild it
  function renderPeople() {
    renderCursors();
    const people = sortedPeople(room.members.values());
    const key = JSON.stringify(people.map((m) => [m.id, m.name, m.conns, m.meta?.color, m.id === room.me?.id]));
    if (key === shown) return;
    shown = key;
    showPeople(people, room.me?.id, (m) => (m.conns > 1 ? `${m.conns} tabs` : ""));
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

  const send = sender(room);
  if (viewOnly) {
    // Nothing to draw with: the tools go, the canvas takes no strokes.
    $("tools").hidden = true;
    canvas.setAttribute("aria-label", "Shared whiteboard, view only");
    canvas.classList.add("view-only");
  } else {
    drawing(room, board, canvas, myColor, send);
  }
  setupInvite("r", roomName, { viewOnly });
  setupHistory({
    roomName,
    kind: "state",
    getToken: options.getToken,
    viewOnly,
    preview: (_v, body) => previewBoard(strokesOfState(body?.data)),
    restore: (_v, body) => restoreBoard(board, send, strokesOfState(body?.data)),
  });
}

/**
 * Publishes a stored message, echoed, and publishes it again after an
 * unavailable or rate_limited refusal with the same key, so the server keeps
 * it once.
 */
function sender(room) {
  const send = (data, key = newId() + newId(), attempt = 0) =>
    room.publish(data, { echo: true, key }).catch((err) => {
      if ((err.code === "unavailable" || err.code === "rate_limited") && attempt < RETRIES) {
        return new Promise((resolve) => setTimeout(resolve, 500 * 2 ** attempt)).then(() => send(data, key, attempt + 1));
      }
      console.warn("roomcast: publish failed:", err.message);
      throw err;
    });
  return send;
}

/**
 * Makes the board a version's as a new edit everyone sees: stored restore
 * messages, the first of which clears the board, carrying the version's
 * strokes under new ids (the old ones may have been erased here, and an
 * erased id never comes back). Chunked so each fits in a message.
 * @param {Board} _board @param {(data: any) => Promise<any>} send @param {import("./board.js").StrokeData[]} strokes
 */
async function restoreBoard(_board, send, strokes) {
  const chunks = [[]];
  let size = 0;
  for (const s of strokes) {
    const n = JSON.stringify(s).length;
    if (size + n > RESTORE_CHUNK && chunks.at(-1).length) {
      chunks.push([]);
      size = 0;
    }
    chunks.at(-1).push({ ...s, id: newId() });
    size += n;
  }
  // In order: each waits for the one before, so the server stores them so.
  // The board takes them from their echoes, at their seq, as every tab does.
  for (const [i, part] of chunks.entries()) await send({ kind: "restore", id: newId(), clear: i === 0, strokes: part });
}

/** A read-only picture of strokes, for the history panel. */
function previewBoard(strokes) {
  const frame = document.createElement("div");
  frame.className = "board-preview";
  const canvas = document.createElement("canvas");
  canvas.setAttribute("role", "img");
  canvas.setAttribute("aria-label", `The board of this version: ${strokes.length} stroke${strokes.length === 1 ? "" : "s"}`);
  frame.append(canvas);
  // The Board fits the canvas into the frame once the frame has a size.
  requestAnimationFrame(() => new Board(canvas, frame).load(strokes));
  return frame;
}

/**
 * Applies a message to the board: segments (ephemeral) as they come, stored
 * strokes, erases and clears at their seq. Applying one twice changes
 * nothing, so a state that already holds a later message is fine.
 * @param {Board} board @param {import("./roomcast.js").Message} m
 */
function applyMessage(board, { data, seq }) {
  switch (data?.kind) {
    case "segment":
      if (validStroke(data)) board.extend(data.id, data.color, data.width, data.points);
      break;
    case "stroke":
      if (validStroke(data)) board.commit(pickStroke(data), seq);
      break;
    case "erase":
      if (Array.isArray(data.ids)) board.remove(data.ids.filter((id) => typeof id === "string"));
      break;
    case "clear":
      board.clearStored();
      break;
    case "restore":
      if (!Array.isArray(data.strokes)) break;
      board.batch(() => {
        if (data.clear === true) seq === undefined ? board.clearFinished() : board.clearStored();
        for (const s of data.strokes) if (validStroke(s)) board.commit(pickStroke(s), seq);
      });
      break;
  }
}

/** The board as the room's state: its stored strokes in painting order. */
const boardState = (board) => ({ v: STATE_VERSION, strokes: board.stored() });

/** The strokes of a state, checked like those of messages. */
function strokesOfState(data) {
  if (data?.v !== STATE_VERSION || !Array.isArray(data.strokes)) return [];
  return data.strokes.filter(validStroke).map(pickStroke);
}

/** Pointer input: draws locally and sends the stroke as it grows. */
function drawing(room, board, canvas, myColor, send) {
  let current = null; // the stroke under the pointer
  let pointer = null; // id of the pointer drawing it (a second finger does not)
  let sent = 0; // points of current already sent as segments
  let timer = 0;
  const mine = []; // ids of strokes this tab drew, for undo
  // Stored, and echoed (send): the board takes its own strokes at their
  // seq, in the order every other tab has them.
  const publish = (data) => send(data).catch(() => {}); // logged by send

  const tool = () => ({
    color: document.querySelector('input[name="color"]:checked').value,
    width: Number($("width").value),
  });

  function begin(point) {
    current = { id: newId(), ...tool(), points: [point] };
    sent = 0;
    board.begin(current);
    current = board.strokes.get(current.id);
    timer = setInterval(sendSegment, SEGMENT_INTERVAL);
  }

  // A stroke in progress is ephemeral: not stored, not queued while offline
  // (the finished stroke is enough).
  function sendSegment() {
    if (!current || current.points.length === sent || room.status !== "open") return;
    const { id, color, width, points } = current;
    room.publish({ kind: "segment", id, color, width, points: points.slice(sent) }, { ephemeral: true }).catch(() => {});
    sent = points.length;
  }

  function finish() {
    if (!current) return;
    clearInterval(timer);
    board.finish(current.id);
    publish({ kind: "stroke", ...pickStroke(current) });
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
      publish({ kind: "erase", id: newId(), ids: [id] });
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
    board.clearFinished();
    publish({ kind: "clear", id: newId() });
  });
  $("width").addEventListener("input", () => ($("width-value").textContent = $("width").value));
}

const isPoint = (p) => Array.isArray(p) && p.length === 2 && p.every((v) => Number.isFinite(v) && v >= 0 && v <= 1);

// Data from other members is checked before it reaches the canvas.
function validStroke(s) {
  return (
    typeof s?.id === "string" && safeColor(s.color) !== null && Number.isFinite(s.width) && s.width > 0 && s.width <= 100 &&
    Array.isArray(s.points) && s.points.length > 0 && s.points.length <= 10000 && s.points.every(isPoint)
  );
}

const pickStroke = ({ id, color, width, points }) => ({ id, color, width, points });
