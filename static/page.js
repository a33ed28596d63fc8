// The start shared by the pages of a room, the whiteboard (/r/{room}) and
// the shared document (/d/{room}): the room's name from the path, the token
// (from ?token= or, on a -dev server, minted for a name the user gives),
// a fresh dev token before every reconnect, and the status and problem
// lines. The pages' HTML has the same ids for these: room-name, status,
// problem, problem-text, join-dialog, join-name and join-form.

import { devToken, devUserId, rememberedName, rememberName, tokenClaims, ROOM_NAME } from "./identity.js";

const $ = (id) => document.getElementById(id);

export const STATUS_TEXT = { connecting: "Connecting…", open: "Connected", reconnecting: "Reconnecting…", closed: "Disconnected" };

/**
 * The room's name, the last part of the page's path, shown in the header
 * and in the title as "{room} · {title}".
 * @param {string} title
 */
export function pageRoom(title) {
  const roomName = decodeURIComponent(location.pathname.split("/").filter(Boolean).pop() ?? "");
  $("room-name").textContent = roomName;
  document.title = `${roomName} · ${title}`;
  return roomName;
}

/**
 * The token the page joins with, its claims, and the getToken to give the
 * SDK; null when there is none (the page shows why). what names the page's
 * thing in the explanation ("room", "document").
 * @param {string} roomName @param {{what: string}} options
 * @returns {Promise<{token: string, claims: Record<string, any>, getToken: () => Promise<string>} | null>}
 */
export async function pageToken(roomName, { what }) {
  if (!ROOM_NAME.test(roomName)) {
    showProblem("This is not a valid room name. Room names use letters, digits and . _ : -");
    return null;
  }
  const token = new URLSearchParams(location.search).get("token") ?? (await tokenFromName(roomName, what));
  if (!token) return null;
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
  return { token, claims, getToken };
}

// In -dev mode, asks for a display name and mints a token with it; otherwise
// explains that the join link needs a token.
async function tokenFromName(roomName, what) {
  if ((await devToken("probe", "probe", roomName)) === null) {
    showProblem(`This ${what} needs an invitation: open the join link you were given (it ends in ?token=…), or the page of the app that embeds this room.`);
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

/** Shows text in the problem box; the status says "Not connected". @param {string} text */
export function showProblem(text) {
  $("problem-text").textContent = text;
  $("problem").hidden = false;
  setStatus("closed", "Not connected");
}

/** @param {keyof typeof STATUS_TEXT} status @param {string} [text] */
export function setStatus(status, text = STATUS_TEXT[status]) {
  const el = $("status");
  el.dataset.status = status;
  el.textContent = text;
}
