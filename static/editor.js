// The rich-text editor of the document page (/d/{room}): ProseMirror bound
// to the Y.XmlFragment "prosemirror" of the room's document by
// y-prosemirror (ySyncPlugin), with the others' cursors and selections
// from the y-websocket awareness (yCursorPlugin, labelled with their names
// and colours) and an undo that takes back only this tab's own edits
// (yUndoPlugin: Mod-z, Mod-Shift-z / Mod-y). Headings, bullet and ordered
// lists, bold, italic, links, inline code and code blocks, from a toolbar,
// the keyboard and Markdown-like input rules ("# ", "- ", "1. ", "```").

import {
  Y, EditorState, EditorView, Schema, DOMSerializer, basicSchema, addListNodes, wrapInList, splitListItem, liftListItem,
  sinkListItem, keymap, baseKeymap, toggleMark, setBlockType, chainCommands, exitCode, inputRules, wrappingInputRule,
  textblockTypeInputRule, ySyncPlugin, yCursorPlugin, yUndoPlugin, undoCommand, redoCommand, yXmlFragmentToProseMirrorRootNode,
} from "./vendor/yjs-bundle.js";
import { colorFor } from "./identity.js";
import { safeColor } from "./page.js";

const $ = (id) => document.getElementById(id);

/** The name of the document's fragment the editor binds. */
export const FRAGMENT = "prosemirror";

const LINK = /^(https?:\/\/|mailto:)/i;
/** A link's address if it is http(s) or mailto, else null. */
const safeHref = (href) => (typeof href === "string" && LINK.test(href.trim()) ? href.trim() : null);

// The basic schema with lists, without images (a pasted or remote image
// would load from anywhere), and with links that only ever point at
// http(s) or mailto addresses, whatever another client put in the document.
export const schema = new Schema({
  nodes: addListNodes(basicSchema.spec.nodes.remove("image"), "paragraph block*", "block"),
  marks: basicSchema.spec.marks.update("link", {
    attrs: { href: { default: "" }, title: { default: null } },
    inclusive: false,
    parseDOM: [{ tag: "a[href]", getAttrs: (dom) => (safeHref(dom.getAttribute("href")) ? { href: safeHref(dom.getAttribute("href")), title: dom.getAttribute("title") } : false) }],
    toDOM: (mark) => ["a", { href: safeHref(mark.attrs.href) ?? "#", title: mark.attrs.title, rel: "noopener noreferrer nofollow", target: "_blank" }, 0],
  }),
});

/**
 * Starts the rich editor in #editor-wrap.
 * @param {{doc: Y.Doc, awareness: any, viewOnly: boolean, onChange: () => void}} ctx
 */
export function startRich({ doc, awareness, viewOnly, onChange }) {
  const fragment = doc.getXmlFragment(FRAGMENT);
  const { bar, refresh } = toolbar(viewOnly);
  const mount = document.createElement("div");
  mount.id = "editor";
  mount.className = "editor rich";
  $("editor-wrap").replaceChildren(bar, mount);

  let loaded = false; // synced once: the editor takes input (unless view only)
  const view = new EditorView(
    { mount },
    {
      state: EditorState.create({
        schema,
        plugins: [
          ySyncPlugin(fragment),
          yCursorPlugin(awareness, { cursorBuilder, selectionBuilder, awarenessStateFilter: (mine, theirs, state) => mine !== theirs && !!checkUser(state?.user) }),
          yUndoPlugin(),
          keymap({
            "Mod-z": undoCommand,
            "Mod-y": redoCommand,
            "Mod-Shift-z": redoCommand,
            "Mod-b": toggleMark(schema.marks.strong),
            "Mod-i": toggleMark(schema.marks.em),
            "Mod-`": toggleMark(schema.marks.code),
            "Shift-Ctrl-0": setBlockType(schema.nodes.paragraph),
            "Shift-Ctrl-1": setBlockType(schema.nodes.heading, { level: 1 }),
            "Shift-Ctrl-2": setBlockType(schema.nodes.heading, { level: 2 }),
            "Shift-Ctrl-3": setBlockType(schema.nodes.heading, { level: 3 }),
            "Shift-Ctrl-8": wrapInList(schema.nodes.bullet_list),
            "Shift-Ctrl-9": wrapInList(schema.nodes.ordered_list),
            "Shift-Ctrl-\\": setBlockType(schema.nodes.code_block),
            "Mod-Enter": chainCommands(exitCode),
            "Shift-Enter": chainCommands(exitCode, (state, dispatch) => {
              dispatch?.(state.tr.replaceSelectionWith(schema.nodes.hard_break.create()).scrollIntoView());
              return true;
            }),
            Enter: splitListItem(schema.nodes.list_item),
            Tab: sinkListItem(schema.nodes.list_item),
            "Shift-Tab": liftListItem(schema.nodes.list_item),
          }),
          keymap(baseKeymap),
          inputRules({
            rules: [
              textblockTypeInputRule(/^(#{1,3})\s$/, schema.nodes.heading, (m) => ({ level: m[1].length })),
              wrappingInputRule(/^\s*([-+*])\s$/, schema.nodes.bullet_list),
              wrappingInputRule(/^(\d+)\.\s$/, schema.nodes.ordered_list, (m) => ({ order: +m[1] }), (m, node) => node.childCount + node.attrs.order === +m[1]),
              textblockTypeInputRule(/^```$/, schema.nodes.code_block),
            ],
          }),
        ],
      }),
      editable: () => loaded && !viewOnly,
      attributes: { "aria-label": "Shared document", "aria-multiline": "true", role: "textbox", spellcheck: "true" },
      // `this` is the view (y-prosemirror dispatches while it is being made).
      dispatchTransaction(tr) {
        this.updateState(this.state.apply(tr));
        refresh(this);
        if (tr.docChanged) onChange();
      },
    },
  );
  bindToolbar(bar, view);
  refresh(view);

  return {
    view,
    json: () => view.state.doc.toJSON(),
    text: () => view.state.doc.textBetween(0, view.state.doc.content.size, "\n"),
    loaded() {
      loaded = true;
      view.setProps({}); // editable() is asked again
      mount.dataset.placeholder = viewOnly ? "Nothing written yet." : "Type here: everyone in the room sees it as you type.";
      refresh(view);
    },
    size: () => view.state.doc.textContent.length,
    detail: () => "",
    /** A version's content, read only. @param {Y.Doc} vdoc */
    preview(vdoc) {
      const node = yXmlFragmentToProseMirrorRootNode(vdoc.getXmlFragment(FRAGMENT), schema);
      const div = document.createElement("div");
      div.className = "rich-preview";
      div.append(DOMSerializer.fromSchema(schema).serializeFragment(node.content));
      return div;
    },
    /**
     * Makes the document the version's as one new edit of this tab: a
     * ProseMirror transaction that replaces the content with the version's,
     * which y-prosemirror turns into the Yjs change from now to it. The
     * history stays; this tab can undo the restore.
     * @param {Y.Doc} vdoc
     */
    restore(vdoc) {
      const node = yXmlFragmentToProseMirrorRootNode(vdoc.getXmlFragment(FRAGMENT), schema);
      const { state } = view;
      // Its own undo step: not merged with what this tab typed just
      // before, nor with what it types next.
      const undo = undoManagerOf(view);
      undo?.stopCapturing();
      view.dispatch(state.tr.replaceWith(0, state.doc.content.size, node.content));
      undo?.stopCapturing();
    },
  };
}

// undoManagerOf returns the Yjs UndoManager of view's y-prosemirror undo
// plugin (its key is "y-undo$"), or undefined.
function undoManagerOf(view) {
  const plugin = view.state.plugins.find((p) => p.key.startsWith("y-undo$"));
  return plugin?.getState(view.state)?.undoManager;
}

// The toolbar: block types, marks, lists, a link, undo and redo. Each
// button's aria-pressed follows the selection; commands that cannot apply
// are disabled.
const BUTTONS = [
  { id: "tb-p", label: "Text", title: "Normal text (Ctrl+Shift+0)", block: ["paragraph"] },
  { id: "tb-h1", label: "H1", title: "Heading 1 (Ctrl+Shift+1)", block: ["heading", { level: 1 }] },
  { id: "tb-h2", label: "H2", title: "Heading 2 (Ctrl+Shift+2)", block: ["heading", { level: 2 }] },
  { id: "tb-h3", label: "H3", title: "Heading 3 (Ctrl+Shift+3)", block: ["heading", { level: 3 }] },
  { sep: true },
  { id: "tb-bold", label: "B", title: "Bold (Ctrl+B)", mark: "strong", cls: "b" },
  { id: "tb-italic", label: "I", title: "Italic (Ctrl+I)", mark: "em", cls: "i" },
  { id: "tb-code", label: "</>", title: "Inline code (Ctrl+`)", mark: "code" },
  { id: "tb-link", label: "Link", title: "Link", link: true },
  { sep: true },
  { id: "tb-ul", label: "• List", title: "Bullet list (Ctrl+Shift+8)", list: "bullet_list" },
  { id: "tb-ol", label: "1. List", title: "Numbered list (Ctrl+Shift+9)", list: "ordered_list" },
  { id: "tb-codeblock", label: "Code block", title: "Code block (Ctrl+Shift+\\)", block: ["code_block"] },
  { sep: true },
  { id: "tb-undo", label: "Undo", title: "Undo your last edit (Ctrl+Z)", undo: true },
  { id: "tb-redo", label: "Redo", title: "Redo (Ctrl+Shift+Z)", redo: true },
];

function command(b) {
  if (b.block) return setBlockType(schema.nodes[b.block[0]], b.block[1]);
  if (b.mark) return toggleMark(schema.marks[b.mark]);
  if (b.list) return wrapInList(schema.nodes[b.list]);
  if (b.undo) return undoCommand;
  if (b.redo) return redoCommand;
  if (b.link) return linkCommand;
  return () => false;
}

function toolbar(viewOnly) {
  const bar = document.createElement("div");
  bar.className = "format-bar";
  bar.setAttribute("role", "toolbar");
  bar.setAttribute("aria-label", "Formatting");
  bar.hidden = viewOnly;
  for (const b of BUTTONS) {
    if (b.sep) {
      const s = document.createElement("span");
      s.className = "sep";
      s.setAttribute("aria-hidden", "true");
      bar.append(s);
      continue;
    }
    const el = document.createElement("button");
    el.type = "button";
    el.id = b.id;
    el.className = `tb ${b.cls ?? ""}`;
    el.textContent = b.label;
    el.title = b.title;
    el.setAttribute("aria-label", b.title.replace(/ \(.*\)$/, ""));
    if (b.block || b.mark) el.setAttribute("aria-pressed", "false");
    bar.append(el);
  }
  const refresh = (view) => {
    if (viewOnly) return;
    const { state } = view;
    const editable = view.editable;
    for (const b of BUTTONS) {
      if (b.sep) continue;
      const el = bar.querySelector(`#${b.id}`);
      if (!el) continue;
      el.disabled = !editable || (!b.link && !b.mark && !command(b)(state));
      if (b.mark) el.setAttribute("aria-pressed", String(markActive(state, schema.marks[b.mark])));
      if (b.block) {
        const node = state.selection.$from.parent;
        const on = node.type.name === b.block[0] && (!b.block[1] || node.attrs.level === b.block[1].level);
        el.setAttribute("aria-pressed", String(on));
      }
    }
  };
  return { bar, refresh };
}

function bindToolbar(bar, view) {
  // Buttons do not take the focus from the text (mousedown), so the
  // selection they act on is still there.
  bar.addEventListener("mousedown", (ev) => ev.target.closest("button") && ev.preventDefault());
  bar.addEventListener("click", (ev) => {
    const el = ev.target.closest("button");
    const b = el && BUTTONS.find((x) => x.id === el.id);
    if (!b || !view.editable) return;
    command(b)(view.state, view.dispatch, view);
    view.focus();
  });
}

function markActive(state, type) {
  const { from, $from, to, empty } = state.selection;
  if (empty) return !!type.isInSet(state.storedMarks || $from.marks());
  return state.doc.rangeHasMark(from, to, type);
}

// A link over the selection (asks for the address), or off when the
// selection has one. Only http(s) and mailto addresses.
function linkCommand(state, dispatch) {
  const type = schema.marks.link;
  if (state.selection.empty) return false;
  if (!dispatch) return true;
  if (markActive(state, type)) return toggleMark(type)(state, dispatch);
  const href = safeHref(window.prompt("Link address (https://…)", "https://") ?? "");
  if (!href) return false;
  return toggleMark(type, { href })(state, dispatch);
}

// Awareness states come from other clients: checked before they are shown.
function checkUser(u) {
  if (typeof u?.id !== "string" || typeof u.name !== "string" || !u.id || u.id.length > 256) return null;
  return { id: u.id, name: u.name.slice(0, 64) || u.id, color: safeColor(u.color) ?? colorFor(u.id) };
}

// Another member's cursor: a coloured bar with their name.
function cursorBuilder(state) {
  const user = checkUser(state) ?? { id: "", name: "?", color: "#5f6b7a" };
  const cursor = document.createElement("span");
  cursor.className = "remote-cursor";
  cursor.dataset.user = user.id;
  cursor.style.setProperty("--c", user.color);
  const label = document.createElement("span");
  label.className = "remote-cursor-name";
  label.textContent = user.name;
  cursor.append("\u2060", label, "\u2060");
  return cursor;
}

function selectionBuilder(state) {
  const user = checkUser(state);
  return { class: "remote-selection", style: `background-color: ${(user?.color ?? "#5f6b7a") + "40"}` };
}
