// The shared document page (/d/{room}): a plain-text editor whose text is the
// Y.Text "text" of the room's Yjs document, synced with the stock
// y-websocket provider over the server's /yjs/{room} endpoint. Who is online
// comes from the roomcast SDK (a JSON /ws/{room} socket with the same token;
// the server counts both sockets of a tab as one member); where the others'
// carets are comes from the y-websocket awareness. Yjs and y-websocket are
// the vendored bundle static/vendor/yjs-bundle.js (docs/YJS.md).

import { Y, WebsocketProvider } from "./vendor/yjs-bundle.js";
import { join } from "./roomcast.js";
import { colorFor } from "./identity.js";
import { copyInvite, followPeople, pageRoom, pageToken, safeColor, setStatus, showPeople, showProblem, sortedPeople, toast } from "./page.js";

const $ = (id) => document.getElementById(id);

const CURSOR_INTERVAL = 80; // least ms between two awareness updates of the own caret
// The origin of the transactions made from the textarea's own input: the
// observer skips them (the textarea shows them already), the undo manager
// tracks only them.
const LOCAL = Symbol("textarea");

const roomName = pageRoom("roomcast document");

main().catch((err) => showProblem(`Could not open the document: ${err.message}`));

async function main() {
  const page = await pageToken(roomName, { what: "document" });
  if (!page) return;
  const { token, claims, getToken } = page;
  startDoc(roomName, token, getToken, { id: claims.sub ?? "", name: claims.name || claims.sub || "" });
}

function startDoc(name, token, getToken, me) {
  const myColor = colorFor(me.id);
  const area = $("editor");

  const doc = new Y.Doc();
  const ytext = doc.getText("text");
  const wsBase = `${location.protocol === "https:" ? "wss:" : "ws:"}//${location.host}`;
  // No BroadcastChannel: every tab syncs through the server, so what the
  // status says is what the server has.
  const provider = new WebsocketProvider(`${wsBase}/yjs`, name, doc, { params: { token }, disableBc: true });
  const awareness = provider.awareness;
  awareness.setLocalStateField("user", { id: me.id, name: me.name || me.id, color: myColor });

  const room = join(location.origin, name, { token, getToken });
  const closes = []; // the document socket's closes, for debugging and the tests
  // For debugging in the console and for the browser tests.
  window.roomcastDoc = { doc, provider, room, closes, text: () => ytext.toString(), synced: () => provider.synced };

  // Connection status and the synced indicator, from the provider.
  let lost = false; // a document socket closed: connecting again is reconnecting
  let loaded = false; // synced once: the textarea shows the document
  let refreshing = null;
  provider.on("connection-close", (ev) => {
    lost = true;
    closes.push({ code: ev?.code ?? null, reason: ev?.reason ?? "", at: Date.now() });
    if (ev) console.info(`roomcast: document socket closed (${ev.code}${ev.reason ? " " + ev.reason : ""})`);
    // The next connection takes provider.params: give it a fresh token.
    refreshing ??= getToken()
      .then((t) => (provider.params = { ...provider.params, token: t }))
      .catch(() => {}) // the server is away: the next close tries again
      .finally(() => (refreshing = null));
  });
  provider.on("status", ({ status }) => {
    if (status === "connected") setStatus("open");
    else setStatus(lost ? "reconnecting" : "connecting");
    $("editor-wrap").classList.toggle("offline", status !== "connected");
    renderSynced();
  });
  // A close in 4400..4499: the server says reconnecting cannot help.
  provider.on("closed", ({ code }) => setStatus("closed", `Disconnected (${code})`));
  provider.on("sync", (synced) => {
    if (synced && !loaded) {
      loaded = true;
      area.readOnly = false;
      area.placeholder = "Type here: everyone in the room sees it as you type.";
    }
    renderSynced();
  });
  function renderSynced() {
    const el = $("synced");
    el.dataset.synced = String(provider.synced);
    el.textContent = provider.synced ? "Synced" : provider.wsconnected ? "Syncing…" : loaded ? "Offline · edits are kept" : "Loading…";
  }

  bindTextarea(ytext, area, () => {
    renderInfo();
    scheduleCursor();
    scheduleCarets();
  });

  // The own caret in the awareness, as relative positions, which stay put
  // in the text whatever others insert or delete before them.
  let cursorTimer = 0;
  function scheduleCursor() {
    if (!cursorTimer) cursorTimer = setTimeout(sendCursor, CURSOR_INTERVAL);
  }
  function sendCursor() {
    cursorTimer = 0;
    const rel = (i) => Y.relativePositionToJSON(Y.createRelativePositionFromTypeIndex(ytext, i));
    const { selectionStart: s, selectionEnd: e, selectionDirection: dir } = area;
    const [anchor, head] = dir === "backward" ? [e, s] : [s, e];
    awareness.setLocalStateField("cursor", { anchor: rel(anchor), head: rel(head) });
  }
  for (const type of ["select", "selectionchange", "keyup", "pointerup", "focus"]) area.addEventListener(type, scheduleCursor);
  document.addEventListener("selectionchange", () => document.activeElement === area && scheduleCursor());

  // The others' carets: a coloured bar with their name over the textarea,
  // and "at line n" in the sidebar.
  let caretFrame = 0;
  function scheduleCarets() {
    if (!caretFrame) caretFrame = requestAnimationFrame(renderCarets);
  }
  const mirror = document.createElement("div");
  mirror.className = "caret-mirror";
  mirror.setAttribute("aria-hidden", "true");
  document.body.append(mirror);
  let lines = new Map(); // user id -> line of the caret, for the sidebar
  function renderCarets() {
    caretFrame = 0;
    const text = area.value;
    const marks = [];
    const seen = new Map();
    for (const [client, state] of awareness.getStates()) {
      if (client === doc.clientID) continue;
      const user = checkUser(state?.user);
      const head = user && indexOf(state.cursor?.head);
      if (head == null || head > text.length) continue;
      seen.set(user.id, lineOf(text, head));
      const at = caretPoint(area, mirror, text, head);
      if (at.top + at.height < 0 || at.top > area.clientHeight) continue; // scrolled out of sight
      const el = document.createElement("div");
      el.className = "remote-caret";
      el.dataset.user = user.id;
      el.style.left = `${at.left}px`;
      el.style.top = `${at.top}px`;
      el.style.height = `${at.height}px`;
      el.style.setProperty("--c", user.color);
      el.classList.toggle("flip", at.left > area.clientWidth * 0.75);
      const label = document.createElement("span");
      label.className = "remote-caret-name";
      label.textContent = user.name;
      el.append(label);
      marks.push(el);
    }
    $("carets").replaceChildren(...marks);
    lines = seen;
    renderPeople();
  }
  function indexOf(json) {
    if (!json || typeof json !== "object") return null;
    try {
      const abs = Y.createAbsolutePositionFromRelativePosition(Y.createRelativePositionFromJSON(json), doc);
      return abs && abs.type === ytext ? abs.index : null;
    } catch {
      return null; // not a position in this document
    }
  }
  awareness.on("change", scheduleCarets);
  area.addEventListener("scroll", scheduleCarets);
  new ResizeObserver(scheduleCarets).observe(area);

  function renderInfo() {
    const n = area.value.length;
    $("doc-info").textContent = `${n} character${n === 1 ? "" : "s"}`;
  }
  renderInfo();

  // The sidebar, from the SDK's members.
  room.on("welcome", ({ reconnect }) => {
    room.setPresence({ color: myColor });
    if (reconnect) toast("Reconnected");
    renderPeople();
  });
  followPeople(room, renderPeople);
  let shown = ""; // what the list shows, so caret moves do not rebuild it
  function renderPeople() {
    const people = sortedPeople(room.members.values());
    const mine = room.me?.id ?? me.id;
    const key = JSON.stringify(people.map((m) => [m.id, m.name, m.conns, m.meta?.color, m.id === mine, lines.get(m.id)]));
    if (key === shown) return;
    shown = key;
    showPeople(people, mine, (m, isMe) => {
      const line = isMe ? undefined : lines.get(m.id);
      return line !== undefined ? `at line ${line}` : "";
    });
  }

  $("invite").addEventListener("click", () => copyInvite("d", roomName));
}

/**
 * Binds a textarea to a Y.Text both ways. Input becomes the smallest
 * insert and delete that turn the text before it into the text after it;
 * changes from elsewhere replace the textarea's value and move its
 * selection along with the text around it. Undo and redo are the Y.Text's,
 * of this textarea's changes only. onChange runs after every change.
 * @param {Y.Text} ytext @param {HTMLTextAreaElement} area @param {() => void} onChange
 */
function bindTextarea(ytext, area, onChange) {
  const doc = ytext.doc;
  let shown = ytext.toString(); // what the textarea shows and the Y.Text held after the last sync
  area.value = shown;
  const undo = new Y.UndoManager(ytext, { trackedOrigins: new Set([LOCAL]) });

  area.addEventListener("input", () => {
    const next = area.value;
    if (next === shown) return;
    const { start, removed, inserted } = diff(shown, next, area.selectionEnd);
    shown = next;
    doc.transact(() => {
      if (removed) ytext.delete(start, removed);
      if (inserted) ytext.insert(start, inserted);
    }, LOCAL);
    onChange();
  });

  ytext.observe((event, tx) => {
    if (tx.origin === LOCAL) return;
    const next = ytext.toString();
    const { scrollTop } = area;
    let { selectionStart: s, selectionEnd: e, selectionDirection: dir } = area;
    if (tx.origin === undo) {
      s = e = lastChange(event.delta); // the caret goes where undo or redo changed the text
    } else if (s === e) {
      s = e = mapIndex(s, event.delta, false);
    } else {
      // Text inserted at either end of a selection stays out of it.
      s = mapIndex(s, event.delta, false);
      e = Math.max(s, mapIndex(e, event.delta, true));
    }
    shown = next;
    area.value = next;
    area.setSelectionRange(s, e, dir);
    if (tx.origin !== undo) area.scrollTop = scrollTop; // others' edits do not scroll the view
    onChange();
  });

  const run = (fn) => {
    if (!area.readOnly) fn();
  };
  area.addEventListener("keydown", (ev) => {
    if (!(ev.ctrlKey || ev.metaKey) || ev.altKey) return;
    const key = ev.key.toLowerCase();
    if (key === "z") {
      ev.preventDefault();
      run(() => (ev.shiftKey ? undo.redo() : undo.undo()));
    } else if (key === "y" && !ev.shiftKey) {
      ev.preventDefault();
      run(() => undo.redo());
    }
  });
  // Undo from the context menu: the textarea's own history would not match
  // the shared text.
  area.addEventListener("beforeinput", (ev) => {
    if (ev.inputType !== "historyUndo" && ev.inputType !== "historyRedo") return;
    ev.preventDefault();
    run(() => (ev.inputType === "historyUndo" ? undo.undo() : undo.redo()));
  });
}

const isHigh = (c) => c >= 0xd800 && c <= 0xdbff;
const isLow = (c) => c >= 0xdc00 && c <= 0xdfff;

/**
 * The edit that turns before into after: removed characters from start,
 * then inserted. The unchanged text around it is as long as it can be, but
 * the edit ends at the caret, so typing "a" after the first "a" of "aa"
 * inserts at 1, not at 2. Surrogate pairs are never split.
 * @param {string} before @param {string} after @param {number} caret
 */
function diff(before, after, caret) {
  const max = Math.min(before.length, after.length);
  let suffix = 0;
  const suffixMax = Math.min(max, Math.max(0, after.length - caret));
  while (suffix < suffixMax && before.charCodeAt(before.length - 1 - suffix) === after.charCodeAt(after.length - 1 - suffix)) suffix++;
  let prefix = 0;
  const prefixMax = max - suffix;
  while (prefix < prefixMax && before.charCodeAt(prefix) === after.charCodeAt(prefix)) prefix++;
  if (prefix > 0 && isHigh(before.charCodeAt(prefix - 1))) prefix--;
  if (suffix > 0 && isLow(before.charCodeAt(before.length - suffix))) suffix--;
  return { start: prefix, removed: before.length - prefix - suffix, inserted: after.slice(prefix, after.length - suffix) };
}

const insertLength = (op) => (typeof op.insert === "string" ? op.insert.length : 1);

/**
 * Where index pos of the text before a change is after it (delta: the
 * change as a Y.Text delta). Text inserted exactly at pos goes before it,
 * unless stay, then after it.
 * @param {number} pos @param {Array<{insert?: any, retain?: number, delete?: number}>} delta @param {boolean} stay
 */
function mapIndex(pos, delta, stay) {
  let at = 0; // index in the text before the change
  let moved = pos;
  for (const op of delta) {
    if (at > pos || (stay && at === pos && op.insert !== undefined)) break;
    if (op.retain !== undefined) at += op.retain;
    else if (op.insert !== undefined) moved += insertLength(op);
    else if (op.delete !== undefined) {
      if (at < pos) moved -= Math.min(op.delete, pos - at);
      at += op.delete;
    }
  }
  return moved;
}

/** The index in the changed text just after the last thing the delta changed. */
function lastChange(delta) {
  let at = 0;
  let end = 0;
  for (const op of delta) {
    if (op.retain !== undefined) at += op.retain;
    else if (op.insert !== undefined) end = at += insertLength(op);
    else if (op.delete !== undefined) end = at;
  }
  return end;
}

/** The line (from 1) that index i of text is on. */
function lineOf(text, i) {
  let n = 1;
  for (let j = text.indexOf("\n"); j !== -1 && j < i; j = text.indexOf("\n", j + 1)) n++;
  return n;
}

// The styles that decide where text wraps in the textarea, copied to the
// mirror that measures it.
const MIRRORED = [
  "fontFamily", "fontSize", "fontWeight", "fontStyle", "fontVariant", "fontStretch", "lineHeight", "letterSpacing", "wordSpacing",
  "textTransform", "textIndent", "tabSize", "whiteSpace", "overflowWrap", "wordBreak", "paddingTop", "paddingRight", "paddingBottom", "paddingLeft",
];

/**
 * Where a caret at index i of text is drawn in the textarea, in pixels from
 * its border box, scrolling included: measured on a hidden copy of the
 * textarea's text that wraps the same way.
 */
function caretPoint(area, mirror, text, i) {
  const cs = getComputedStyle(area);
  for (const p of MIRRORED) mirror.style[p] = cs[p];
  mirror.style.width = `${area.clientWidth - parseFloat(cs.paddingLeft) - parseFloat(cs.paddingRight)}px`;
  const mark = document.createElement("span");
  // The rest of the text, so a word split by the caret wraps as it does in the textarea.
  mark.textContent = text.slice(i) || ".";
  mirror.replaceChildren(text.slice(0, i), mark);
  const height = parseFloat(cs.lineHeight) || parseFloat(cs.fontSize) * 1.2;
  return {
    left: mark.offsetLeft + parseFloat(cs.borderLeftWidth) - area.scrollLeft,
    top: mark.offsetTop + parseFloat(cs.borderTopWidth) - area.scrollTop,
    height,
  };
}

// Awareness states come from other clients: checked before they are shown.
function checkUser(u) {
  if (typeof u?.id !== "string" || typeof u.name !== "string" || !u.id || u.id.length > 256) return null;
  return { id: u.id, name: u.name.slice(0, 64) || u.id, color: safeColor(u.color) ?? colorFor(u.id) };
}
