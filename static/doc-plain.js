// The plain-text editor of the document page (/d/{room}?plain=1): a
// textarea bound to the Y.Text "text" of the room's document, with the
// others' carets drawn over it. doc.js starts it; the rich editor
// (editor.js) is what the page shows by default.

import { Y } from "./vendor/yjs-bundle.js";
import { colorFor } from "./identity.js";
import { safeColor } from "./page.js";

const $ = (id) => document.getElementById(id);

const CURSOR_INTERVAL = 80; // least ms between two awareness updates of the own caret
// The origin of the transactions made from the textarea's own input: the
// observer skips them (the textarea shows them already), the undo manager
// tracks only them.
const LOCAL = Symbol("textarea");

/**
 * Starts the plain-text editor in #editor-wrap.
 * @param {{doc: Y.Doc, awareness: any, viewOnly: boolean, onChange: () => void, onPeople: () => void}} ctx
 */
export function startPlain({ doc, awareness, viewOnly, onChange, onPeople }) {
  const ytext = doc.getText("text");
  const label = document.createElement("label");
  label.htmlFor = "editor";
  label.className = "visually-hidden";
  label.textContent = "Shared document (plain text)";
  const area = document.createElement("textarea");
  area.id = "editor";
  area.className = "editor plain";
  area.spellcheck = false;
  area.readOnly = true;
  area.placeholder = "Loading the document…";
  const carets = document.createElement("div");
  carets.id = "carets";
  carets.className = "carets";
  carets.setAttribute("aria-hidden", "true");
  $("editor-wrap").replaceChildren(label, area, carets);

  bindTextarea(ytext, area, () => {
    onChange();
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
    onPeople();
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

  return {
    text: () => ytext.toString(),
    /** Called at the first sync: the textarea takes input (unless view only). */
    loaded() {
      if (viewOnly) {
        area.placeholder = "Nothing written yet.";
        return;
      }
      area.readOnly = false;
      area.placeholder = "Type here: everyone in the room sees it as you type.";
    },
    size: () => area.value.length,
    /** The sidebar's line under a member: where their caret is. */
    detail: (id) => (lines.get(id) !== undefined ? `at line ${lines.get(id)}` : ""),
    /** A version's text, read only. @param {Y.Doc} vdoc */
    preview(vdoc) {
      const pre = document.createElement("pre");
      pre.className = "plain-preview";
      pre.textContent = vdoc.getText("text").toString();
      return pre;
    },
    /**
     * Makes the text the version's, as one new edit of this tab (not
     * LOCAL: the textarea learns it from the observer, like any change).
     * @param {Y.Doc} vdoc
     */
    restore(vdoc) {
      const want = vdoc.getText("text").toString();
      const { start, removed, inserted } = diff(ytext.toString(), want, want.length);
      doc.transact(() => {
        if (removed) ytext.delete(start, removed);
        if (inserted) ytext.insert(start, inserted);
      }, "restore");
    },
  };
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
