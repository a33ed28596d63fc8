// The start shared by the pages of a room, the whiteboard (/r/{room}) and
// the shared document (/d/{room}): the room's name from the path, the token
// (from ?token= or, on a -dev server, minted for a name the user gives),
// a fresh dev token before every reconnect, and the status and problem
// lines. The pages' HTML has the same ids for these: room-name, status,
// problem, problem-text, join-dialog, join-name and join-form; and for the
// people sidebar and the invite button: people-count, people and toasts.

import { colorFor, devToken, devUserId, initials, rememberedName, rememberName, tokenClaims, ROOM_NAME } from "./identity.js";

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

const COLOR = /^#[0-9a-fA-F]{6}$/;
/** The colour if it is a "#rrggbb" string, else null. @param {unknown} c */
export const safeColor = (c) => (typeof c === "string" && COLOR.test(c) ? c : null);

/**
 * The room's members in the order the sidebar shows them: first come first,
 * then by name.
 * @param {Iterable<import("./roomcast.js").Member>} members
 */
export function sortedPeople(members) {
  return [...members].sort((a, b) => a.since - b.since || a.name.localeCompare(b.name));
}

/**
 * Fills the people sidebar (people-count and the people list). detail gives
 * the line under a present member's name ("" for none); a member with no
 * connection shows "reconnecting…".
 * @param {import("./roomcast.js").Member[]} people @param {string | undefined} myId
 * @param {(m: import("./roomcast.js").Member, isMe: boolean) => string} detail
 */
export function showPeople(people, myId, detail) {
  $("people-count").textContent = `(${people.length})`;
  $("people").replaceChildren(...people.map((m) => personItem(m, m.id === myId, detail)));
}

/**
 * Calls render whenever the room's members change, and toasts who joined
 * (not this user) and who left or lost connection.
 * @param {import("./roomcast.js").Room} room @param {() => void} render
 */
export function followPeople(room, render) {
  room.on("sync", render);
  room.on("update", render);
  room.on("join", ({ member }) => {
    if (member.id !== room.me?.id) toast(`${member.name} joined`);
    render();
  });
  room.on("leave", ({ member, reason }) => {
    toast(reason === "timeout" ? `${member.name} lost connection` : `${member.name} left`);
    render();
  });
}

function personItem(m, isMe, detail) {
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
  const line = document.createElement("span");
  line.className = "detail";
  line.textContent = away ? "reconnecting…" : detail(m, isMe);
  const who = document.createElement("span");
  who.className = "who";
  who.append(name, line);
  li.append(avatar, who);
  return li;
}

/** Shows text for a few seconds in the toasts box. @param {string} text */
export function toast(text) {
  const el = document.createElement("div");
  el.className = "toast";
  el.textContent = text;
  $("toasts").append(el);
  setTimeout(() => el.remove(), 4000);
}

/**
 * Copies the room's invite link, {origin}/{path}/{room}, and says so in a
 * toast (or shows the link when it cannot be copied).
 * @param {"r" | "d"} path @param {string} roomName
 */
export async function copyInvite(path, roomName) {
  const link = `${location.origin}/${path}/${roomName}`;
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
