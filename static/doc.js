// The shared document page (/d/{room}): the room's Yjs document, synced with
// the stock y-websocket provider over the server's /yjs/{room} endpoint,
// edited in a rich-text editor (editor.js: ProseMirror and y-prosemirror on
// the Y.XmlFragment "prosemirror"), or with ?plain=1 in a textarea on the
// Y.Text "text" (doc-plain.js). Who is online comes from the roomcast SDK
// (a JSON /ws/{room} socket with the same token; the server counts both
// sockets of a tab as one member); the others' cursors come from the
// y-websocket awareness. The History button lists the room's versions and
// restores one as a new edit; a view-only token (or ?view=1) makes the page
// read only. Yjs, y-websocket, ProseMirror and y-prosemirror are the
// vendored bundle static/vendor/yjs-bundle.js (docs/YJS.md).

import { Y, WebsocketProvider } from "./vendor/yjs-bundle.js";
import { join } from "./roomcast.js";
import { colorFor } from "./identity.js";
import { followPeople, pageRoom, pageToken, setStatus, setupInvite, showPeople, showProblem, sortedPeople, toast } from "./page.js";
import { setupHistory } from "./history.js";
import { changeNoter, noteRoom } from "./recent.js";
import { startRich } from "./editor.js";
import { startPlain } from "./doc-plain.js";

const $ = (id) => document.getElementById(id);

const plain = new URLSearchParams(location.search).get("plain") === "1";
const roomName = pageRoom("roomcast document");

main().catch((err) => showProblem(`Could not open the document: ${err.message}`));

async function main() {
  const page = await pageToken(roomName, { what: "document" });
  if (!page) return;
  const { token, claims, getToken, viewOnly } = page;
  startDoc(roomName, token, getToken, { id: claims.sub ?? "", name: claims.name || claims.sub || "" }, viewOnly);
}

function startDoc(name, token, getToken, me, viewOnly) {
  const myColor = colorFor(me.id);
  noteRoom(name, "doc");
  const changed = changeNoter(name, "doc");

  const doc = new Y.Doc();
  const wsBase = `${location.protocol === "https:" ? "wss:" : "ws:"}//${location.host}`;
  // No BroadcastChannel: every tab syncs through the server, so what the
  // status says is what the server has.
  const provider = new WebsocketProvider(`${wsBase}/yjs`, name, doc, { params: { token }, disableBc: true });
  const awareness = provider.awareness;
  awareness.setLocalStateField("user", { id: me.id, name: me.name || me.id, color: myColor });

  const room = join(location.origin, name, { token, getToken });
  const closes = []; // the document socket's closes, for debugging and the tests

  let loaded = false; // synced once: the editor shows the document
  // The editor may report a change while it is being made: renderInfo
  // waits for it.
  let editor = null;
  const ctx = { doc, awareness, viewOnly, onChange: () => editor && renderInfo(), onPeople: () => editor && renderPeople() };
  editor = plain ? startPlain(ctx) : startRich(ctx);
  $("mode-switch").href = plain ? location.pathname + keepQuery({ plain: null }) : location.pathname + keepQuery({ plain: "1" });
  $("mode-switch").textContent = plain ? "Rich text" : "Plain text";
  // A change from anyone is a change of the room, for the landing page's list.
  doc.on("update", () => loaded && changed());

  // For debugging in the console and for the browser tests.
  window.roomcastDoc = {
    Y, doc, provider, room, closes, editor, viewOnly,
    /** The text a version's update shows in this editor. @param {Uint8Array} update */
    versionText: (update) => editor.preview(versionDoc(update)).textContent,
    view: editor.view ?? null,
    json: () => editor.json?.() ?? null,
    text: () => editor.text(),
    synced: () => provider.synced,
    loaded: () => loaded,
  };

  // Connection status and the synced indicator, from the provider.
  let lost = false; // a document socket closed: connecting again is reconnecting
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
      editor.loaded();
      // Since the page started, in ms: synced and shown, then painted.
      window.roomcastDoc.loadedAt = performance.now();
      requestAnimationFrame(() => setTimeout(() => (window.roomcastDoc.paintedAt = performance.now())));
      offerOldText();
      renderInfo();
    }
    renderSynced();
  });
  function renderSynced() {
    const el = $("synced");
    el.dataset.synced = String(provider.synced);
    el.textContent = provider.synced ? "Synced" : provider.wsconnected ? "Syncing…" : loaded ? "Offline · edits are kept" : "Loading…";
  }

  function renderInfo() {
    const n = editor.size();
    $("doc-info").textContent = `${n} character${n === 1 ? "" : "s"}`;
  }
  renderInfo();

  // A document written on the plain-text page before the rich editor has
  // its text in the Y.Text "text": say where to find it.
  function offerOldText() {
    if (plain || doc.getText("text").length === 0) return;
    $("old-text-link").href = $("mode-switch").href;
    $("old-text").hidden = false;
  }

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
    const key = JSON.stringify(people.map((m) => [m.id, m.name, m.conns, m.meta?.color, m.id === mine, editor.detail(m.id)]));
    if (key === shown) return;
    shown = key;
    showPeople(people, mine, (m, isMe) => (isMe ? "" : editor.detail(m.id)));
  }

  setupInvite("d", roomName, { viewOnly });
  setupHistory({
    roomName,
    kind: "doc",
    getToken,
    viewOnly,
    preview: (_v, body) => editor.preview(versionDoc(body)),
    restore: (_v, body) => {
      if (!loaded) throw new Error("the document is not loaded yet");
      editor.restore(versionDoc(body));
    },
    focusAfter: () => (editor.view ? editor.view.focus() : document.getElementById("editor").focus()),
  });
}

/** A version's Yjs update as a fresh Y.Doc of its own. @param {ArrayBuffer} body */
function versionDoc(body) {
  const vdoc = new Y.Doc();
  Y.applyUpdate(vdoc, new Uint8Array(body));
  return vdoc;
}

/** The page's query with some parameters set (or removed: null). */
function keepQuery(set) {
  const q = new URLSearchParams(location.search);
  for (const [k, v] of Object.entries(set)) {
    if (v === null) q.delete(k);
    else q.set(k, v);
  }
  const s = q.toString();
  return s ? `?${s}` : "";
}
