// The landing page: open or create a document or a whiteboard and, when the
// server runs with -dev, pick a display name to mint a token with. Below,
// the rooms this browser has been in (recent.js), with who is in them now
// where a token allows asking (in -dev mode, a token minted for the name).

import { devToken, devUserId, randomRoomName, rememberedName, rememberName, roomSlug } from "./identity.js";
import { ago, recentRooms } from "./recent.js";

const $ = (id) => document.getElementById(id);
const pathOf = (room, kind) => `/${kind === "doc" ? "d" : "r"}/${encodeURIComponent(room)}`;
let devMode = false;

$("name").value = rememberedName();
showRecent();

// A throwaway token request tells whether this server mints dev tokens.
devToken("probe", "probe", "probe").then(
  (token) => {
    devMode = token !== null;
    $("name-field").hidden = !devMode;
    $("no-dev").hidden = devMode;
    (devMode && !$("name").value ? $("name") : $("room")).focus();
    if (devMode) showMembers();
  },
  () => showError("The server cannot be reached."),
);

$("room-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  enter(roomSlug($("room").value), document.querySelector('input[name="kind"]:checked').value);
});
$("create-doc").addEventListener("click", () => enter(randomRoomName(), "doc"));
$("create").addEventListener("click", () => enter(randomRoomName(), "board"));

async function enter(room, kind) {
  showError("");
  if (!room) return showError("Type a room name, or create a new one.");
  const path = pathOf(room, kind);
  if (!devMode) return location.assign(path); // the room page explains what is missing
  const name = $("name").value.trim();
  if (!name) {
    $("name").focus();
    return showError("Type your name so the others know who you are.");
  }
  rememberName(name);
  try {
    const token = await devToken(devUserId(name), name, room);
    location.assign(`${path}?token=${encodeURIComponent(token)}`);
  } catch (err) {
    showError(`Could not get a token: ${err.message}`);
  }
}

function showError(text) {
  $("form-error").textContent = text;
}

function showRecent() {
  const rooms = recentRooms();
  $("recent-card").hidden = rooms.length === 0;
  $("recent").replaceChildren(
    ...rooms.map((r) => {
      const li = document.createElement("li");
      li.className = "recent-room";
      li.dataset.room = r.room;
      li.dataset.kind = r.kind;
      const kind = document.createElement("span");
      kind.className = `kind kind-${r.kind}`;
      kind.textContent = r.kind === "doc" ? "Document" : "Whiteboard";
      const a = document.createElement("a");
      a.className = "recent-name";
      a.href = pathOf(r.room, r.kind);
      a.textContent = r.room;
      const when = document.createElement("span");
      when.className = "hint when";
      when.textContent = `visited ${ago(r.visited)}` + (r.changed ? ` · changed ${ago(r.changed)}` : "");
      const who = document.createElement("span");
      who.className = "hint who";
      li.append(kind, a, when, who);
      return li;
    }),
  );
}

// Who is in each listed room now: GET /api/rooms/{room}/members with a
// token for it. Only in -dev mode (a token is minted for the remembered
// name); a room the token may not read, or any failure, shows nothing.
async function showMembers() {
  const name = rememberedName() || "visitor";
  for (const li of $("recent").children) {
    const room = li.dataset.room;
    try {
      const token = await devToken(devUserId(name), name, room);
      if (!token) return;
      const res = await fetch(`/api/rooms/${encodeURIComponent(room)}/members`, { headers: { Authorization: `Bearer ${token}` }, cache: "no-store" });
      if (!res.ok) continue;
      const { members } = await res.json();
      if (!Array.isArray(members)) continue;
      const names = members.map((m) => String(m?.name || m?.id || "")).filter(Boolean);
      li.querySelector(".who").textContent = names.length ? `${names.length} online: ${names.join(", ")}` : "nobody online";
    } catch {
      // quietly nothing: the list is a convenience
    }
  }
}
