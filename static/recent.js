// The rooms this browser has been in, for the landing page: kept in
// localStorage by the room pages (name, kind, when visited, when last seen
// changed). Nothing secret: no tokens.

const KEY = "roomcast.recent";
const MAX = 30;

/**
 * @typedef {{room: string, kind: "doc" | "board", visited: number, changed?: number}} RecentRoom
 */

/** The rooms, the last visited first. @returns {RecentRoom[]} */
export function recentRooms() {
  try {
    const list = JSON.parse(localStorage.getItem(KEY) ?? "[]");
    if (!Array.isArray(list)) return [];
    return list
      .filter((r) => typeof r?.room === "string" && (r.kind === "doc" || r.kind === "board") && Number.isFinite(r.visited))
      .sort((a, b) => b.visited - a.visited);
  } catch {
    return []; // unreadable: start over
  }
}

/**
 * Records a visit (visited: now) or a change seen (changed: now) of a room.
 * @param {string} room @param {"doc" | "board"} kind @param {{changed?: boolean}} [what]
 */
export function noteRoom(room, kind, { changed = false } = {}) {
  try {
    const list = recentRooms().filter((r) => !(r.room === room && r.kind === kind));
    const old = recentRooms().find((r) => r.room === room && r.kind === kind);
    const now = Date.now();
    const entry = { room, kind, visited: changed ? old?.visited ?? now : now, changed: changed ? now : old?.changed };
    list.unshift(entry);
    localStorage.setItem(KEY, JSON.stringify(list.slice(0, MAX)));
  } catch {
    // storage full or off: the list is a convenience
  }
}

/**
 * Returns a function that notes a change of the room at most every few
 * seconds (a change is seen at every keystroke or stroke).
 * @param {string} room @param {"doc" | "board"} kind
 */
export function changeNoter(room, kind) {
  let last = 0;
  return () => {
    const now = Date.now();
    if (now - last < 5000) return;
    last = now;
    noteRoom(room, kind, { changed: true });
  };
}

/** Forgets a room. @param {string} room @param {"doc" | "board"} kind */
export function forgetRoom(room, kind) {
  try {
    localStorage.setItem(KEY, JSON.stringify(recentRooms().filter((r) => !(r.room === room && r.kind === kind))));
  } catch {
    // nothing to do
  }
}

/** "just now", "5 min ago", "3 h ago", or the date. @param {number} ms */
export function ago(ms) {
  const s = Math.max(0, (Date.now() - ms) / 1000);
  if (s < 60) return "just now";
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return new Date(ms).toLocaleDateString(undefined, { year: "numeric", month: "short", day: "numeric" });
}
