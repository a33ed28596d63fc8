// The landing page: pick or create a room and, when the server runs with
// -dev, a display name to mint a token with.

import { devToken, devUserId, randomRoomName, rememberedName, rememberName, roomSlug } from "./identity.js";

const $ = (id) => document.getElementById(id);
let devMode = false;

$("name").value = rememberedName();

// A throwaway token request tells whether this server mints dev tokens.
devToken("probe", "probe", "probe").then(
  (token) => {
    devMode = token !== null;
    $("name-field").hidden = !devMode;
    $("no-dev").hidden = devMode;
    (devMode && !$("name").value ? $("name") : $("room")).focus();
  },
  () => showError("The server cannot be reached."),
);

$("room-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  enter(roomSlug($("room").value));
});
$("create").addEventListener("click", () => enter(randomRoomName()));

async function enter(room) {
  showError("");
  if (!room) return showError("Type a room name, or create a new room.");
  const path = `/r/${room}`;
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
