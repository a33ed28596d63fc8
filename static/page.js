// The start shared by the pages of a room, the whiteboard (/r/{room}) and
// the shared document (/d/{room}): the room's name from the path, the token
// (from ?token= or, on a -dev server, minted for a name the user gives),
// a fresh dev token before every reconnect, and the status and problem
// lines. The pages' HTML has the same ids for these: room-name, status,
// problem, problem-text, join-dialog, join-name and join-form; and for the
// people sidebar and the invite button: people-count, people and toasts;
// view-only for the "View only" badge, invite for the invite dialog.

import { colorFor, devToken, devUserId, initials, rememberedName, rememberName, tokenClaims, viewOnly, ROOM_NAME } from "./identity.js";

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
 * The token the page joins with, its claims, the getToken to give the SDK
 * (it also gives the token of the API calls), and whether the page is view
 * only; null when there is no token (the page shows why). what names the
 * page's thing in the explanation ("room", "document").
 *
 * The page is view only when the token's claims say so (identity.js
 * viewOnly), or when the link asks for it with ?view=1: then a dev server
 * is asked for a view-only token (role=read).
 * @param {string} roomName @param {{what: string}} options
 * @returns {Promise<{token: string, claims: Record<string, any>, getToken: () => Promise<string>, viewOnly: boolean} | null>}
 */
export async function pageToken(roomName, { what }) {
  if (!ROOM_NAME.test(roomName)) {
    showProblem("This is not a valid room name. Room names use letters, digits and . _ : -");
    return null;
  }
  const params = new URLSearchParams(location.search);
  const asked = params.get("view") === "1";
  const role = asked ? "read" : "write";
  const token = params.get("token") ?? (await tokenFromName(roomName, what, role));
  if (!token) return null;
  const claims = tokenClaims(token) ?? {};
  let devMode = true;
  let current = token;
  // Before every reconnect: a dev server mints a fresh token (a restarted
  // dev server has a new secret); any other server gets the token we have.
  const getToken = async () => {
    if (!devMode || !claims.sub) return current;
    const fresh = await devToken(claims.sub, claims.name ?? claims.sub, roomName, role);
    devMode = fresh !== null;
    if (fresh) current = fresh;
    return current;
  };
  const only = asked || viewOnly(claims, roomName);
  if (only) showViewOnly();
  return { token, claims, getToken, viewOnly: only };
}

/** Shows the "View only" badge and marks the page (body.view-only). */
function showViewOnly() {
  document.body.classList.add("view-only");
  const badge = $("view-only");
  if (badge) badge.hidden = false;
}

// In -dev mode, asks for a display name and mints a token with it; otherwise
// explains that the join link needs a token.
async function tokenFromName(roomName, what, role) {
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
  return devToken(devUserId(name), name, roomName, role);
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
 * The invite button opens a dialog with two links to the room: one that
 * can edit and one that can only view (?view=1: on a -dev server the
 * invitee gets a view-only token, role=read). A view-only page offers only
 * the view link. Each link has a copy button.
 * @param {"r" | "d"} path @param {string} roomName @param {{viewOnly: boolean}} options
 */
export function setupInvite(path, roomName, { viewOnly: only }) {
  const base = `${location.origin}/${path}/${encodeURIComponent(roomName)}`;
  const links = [
    { id: "invite-edit", label: "Can edit", link: base, hidden: only },
    { id: "invite-view", label: "Can view", link: `${base}?view=1`, hidden: false },
  ];
  const dialog = document.createElement("dialog");
  dialog.id = "invite-dialog";
  dialog.className = "invite-dialog";
  dialog.setAttribute("aria-labelledby", "invite-title");
  const title = document.createElement("h2");
  title.id = "invite-title";
  title.textContent = "Invite people";
  const hint = document.createElement("p");
  hint.className = "hint";
  hint.textContent = "Send one of these links. Whoever opens it picks a name (on a server that hands out tokens) or needs a token from your app.";
  dialog.append(title, hint);
  for (const l of links) {
    if (l.hidden) continue;
    const row = document.createElement("div");
    row.className = "invite-row";
    const label = document.createElement("label");
    label.htmlFor = l.id;
    label.textContent = l.label;
    const input = document.createElement("input");
    input.id = l.id;
    input.type = "text";
    input.readOnly = true;
    input.value = l.link;
    input.addEventListener("focus", () => input.select());
    const copy = document.createElement("button");
    copy.type = "button";
    copy.className = "button";
    copy.textContent = "Copy";
    copy.setAttribute("aria-label", `Copy the ${l.label.toLowerCase()} link`);
    copy.addEventListener("click", () => copyLink(l.link, `${l.label} link copied`));
    const line = document.createElement("div");
    line.className = "invite-line";
    line.append(input, copy);
    row.append(label, line);
    dialog.append(row);
  }
  const close = document.createElement("button");
  close.type = "button";
  close.className = "button";
  close.textContent = "Close";
  close.addEventListener("click", () => dialog.close());
  const actions = document.createElement("div");
  actions.className = "actions end";
  actions.append(close);
  dialog.append(actions);
  document.body.append(dialog);
  $("invite").addEventListener("click", () => dialog.showModal());
}

/** Copies link and says done in a toast (or shows the link when it cannot be copied). */
async function copyLink(link, done) {
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
    if (!ok) return toast(`Link: ${link}`);
  }
  toast(done);
}
