// Who is at the keyboard (in -dev mode: the name typed, remembered per tab
// in sessionStorage, so a second window starts blank and becomes a second
// person), dev tokens, and the colours and initials that stand for a
// user on screen.

const NAME_KEY = "roomcast.name";

export const ROOM_NAME = /^[A-Za-z0-9._:-]{1,128}$/;

const USER_COLORS = ["#d7263d", "#1b998b", "#2e86de", "#f46036", "#7b2cbf", "#0f8b8d", "#c2185b", "#5c7c00"];

/** A short random id, for strokes, erases, clears and publish keys. */
export function newId() {
  // crypto.getRandomValues works outside secure contexts, unlike randomUUID.
  return [...crypto.getRandomValues(new Uint8Array(8))].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** The name typed last time, to prefill the name field. */
export const rememberedName = () => sessionStorage.getItem(NAME_KEY) ?? "";

/** @param {string} name */
export function rememberName(name) {
  sessionStorage.setItem(NAME_KEY, name);
}

/**
 * The user id of a dev token: the name itself, so two windows with two names
 * are two people, and two tabs with one name are one person with two tabs.
 * @param {string} name
 */
export const devUserId = (name) => name.trim().toLowerCase().replace(/\s+/g, " ");

/**
 * Asks the server for a dev token. Returns null when the server does not mint
 * tokens (it runs without -dev); throws when the server cannot be reached.
 * @param {string} user @param {string} name @param {string} room
 * @param {"write" | "read"} [role] read mints a view token (the room read-only)
 * @returns {Promise<string | null>}
 */
export async function devToken(user, name, room, role = "write") {
  const q = new URLSearchParams({ user, name, room, role });
  const res = await fetch(`/dev/token?${q}`, { cache: "no-store" });
  if (res.status === 404) return null;
  if (!res.ok) throw new Error(`dev token: HTTP ${res.status}`);
  return (await res.json()).token;
}

/**
 * The claims of a JWT, read without checking it (the server checks it).
 * @param {string} token
 * @returns {{sub?: string, name?: string} | null}
 */
export function tokenClaims(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const bytes = Uint8Array.from(atob(part), (c) => c.charCodeAt(0));
    return JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    return null;
  }
}

// Whether a room name is matched by a claim's list: names, and prefixes
// ending in "*".
function listed(list, room) {
  return Array.isArray(list) && list.some((p) => typeof p === "string" && (p.endsWith("*") ? room.startsWith(p.slice(0, -1)) : p === room));
}

/**
 * Whether a token's claims let their holder only view the room: the room is
 * matched by the read claim and not by the rooms claim (no rooms claim next
 * to a read claim means no room to write in). The server enforces it; the
 * page only follows it.
 * @param {Record<string, any>} claims @param {string} room
 */
export function viewOnly(claims, room) {
  if (!listed(claims?.read, room)) return false;
  return claims.rooms === undefined || !listed(claims.rooms, room);
}

/** @param {string} userId */
export function colorFor(userId) {
  let h = 0;
  for (const c of userId) h = (h * 31 + c.codePointAt(0)) >>> 0;
  return USER_COLORS[h % USER_COLORS.length];
}

/** @param {string} name */
export function initials(name) {
  const words = name.trim().split(/\s+/).filter(Boolean);
  const letters = words.length > 1 ? [words[0], words.at(-1)].map((w) => [...w][0]) : [...(words[0] ?? "?")].slice(0, 2);
  return letters.join("").toUpperCase();
}

/**
 * Turns what someone typed into a valid room name ("Design review" -> "design-review").
 * @param {string} text
 */
export function roomSlug(text) {
  return text.trim().toLowerCase().replace(/\s+/g, "-").replace(/[^a-z0-9._:-]/g, "").slice(0, 128);
}

const ADJECTIVES = ["amber", "brave", "calm", "clever", "cosy", "eager", "fuzzy", "gentle", "jolly", "lucky", "mellow", "nimble", "quiet", "rapid", "sunny", "witty"];
const NOUNS = ["otter", "falcon", "maple", "comet", "harbor", "lantern", "meadow", "pebble", "river", "sparrow", "tulip", "walrus", "willow", "zephyr", "badger", "cedar"];

/** A random readable room name such as "brave-otter-42". */
export function randomRoomName() {
  const [a, n, d] = crypto.getRandomValues(new Uint8Array(3));
  return `${ADJECTIVES[a % ADJECTIVES.length]}-${NOUNS[n % NOUNS.length]}-${10 + (d % 90)}`;
}
