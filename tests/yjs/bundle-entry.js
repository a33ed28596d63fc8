/*! roomcast yjs-bundle: yjs 13.6.27, y-websocket 3.1.0, y-protocols 1.0.6,
 * lib0 0.2.120, y-prosemirror 1.3.7, prosemirror-state 1.4.4,
 * prosemirror-view 1.44.0, prosemirror-model 1.25.13,
 * prosemirror-transform 1.12.7, prosemirror-schema-basic 1.2.5,
 * prosemirror-schema-list 1.6.1, prosemirror-keymap 1.2.3,
 * prosemirror-commands 1.7.2, prosemirror-inputrules 1.7.0, orderedmap 2.1.1,
 * w3c-keyname 2.2.8, bundled with esbuild 0.25.12 (full license texts:
 * /static/vendor/LICENSES.txt).
 *
 * yjs: Copyright (c) 2023 Kevin Jahns <kevin.jahns@protonmail.com>, Chair of
 *   Computer Science 5 (Databases & Information Systems), RWTH Aachen University, Germany
 * y-websocket: Copyright (c) 2025 Kevin Jahns <kevin.jahns@protonmail.com>
 * y-protocols: Copyright (c) 2019 Kevin Jahns <kevin.jahns@protonmail.com>
 * lib0: Copyright (c) 2019 Kevin Jahns <kevin.jahns@protonmail.com>
 * y-prosemirror: Copyright (c) 2019 Kevin Jahns <kevin.jahns@protonmail.com>
 * prosemirror-*: Copyright (C) 2015-2017 by Marijn Haverbeke <marijn@haverbeke.berlin> and others
 * orderedmap, w3c-keyname: Copyright (C) 2016 by Marijn Haverbeke <marijn@haverbeke.berlin> and others
 *
 * The MIT License (MIT). Permission is hereby granted, free of charge, to any
 * person obtaining a copy of this software and associated documentation files
 * (the "Software"), to deal in the Software without restriction, including
 * without limitation the rights to use, copy, modify, merge, publish,
 * distribute, sublicense, and/or sell copies of the Software, and to permit
 * persons to whom the Software is furnished to do so, subject to the following
 * conditions:
 *
 * The above copyright notice and this permission notice shall be included in
 * all copies or substantial portions of the Software.
 *
 * THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
 * IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
 * FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
 * AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
 * LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
 * OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
 * SOFTWARE.
 */

// Entry of the vendored browser bundle static/vendor/yjs-bundle.js, which the
// shared document page (/d/{room}, static/doc.js and static/editor.js)
// imports: everything it needs from Yjs, y-websocket, ProseMirror and
// y-prosemirror as one ES module, nothing from the network. One bundle, so
// the page holds one copy of yjs (y-prosemirror's types are the page's).
//
// Rebuild from tests/yjs (versions pinned in package.json and
// package-lock.json), then commit static/vendor/yjs-bundle.js:
//
//   npm ci && npm run bundle
//
// "bundle" runs: esbuild bundle-entry.js --bundle --format=esm --minify
//   --legal-comments=eof --outfile=../../static/vendor/yjs-bundle.js
// When a version changes, update the versions and copyright lines above and
// static/vendor/LICENSES.txt.
export * as Y from 'yjs'
export { WebsocketProvider } from 'y-websocket'
export { EditorState, Plugin, PluginKey, TextSelection } from 'prosemirror-state'
export { EditorView } from 'prosemirror-view'
export { Schema, DOMParser, DOMSerializer, Fragment, Slice } from 'prosemirror-model'
export { schema as basicSchema } from 'prosemirror-schema-basic'
export { addListNodes, wrapInList, splitListItem, liftListItem, sinkListItem } from 'prosemirror-schema-list'
export { keymap } from 'prosemirror-keymap'
export { baseKeymap, toggleMark, setBlockType, wrapIn, lift, chainCommands, exitCode } from 'prosemirror-commands'
export { inputRules, wrappingInputRule, textblockTypeInputRule, InputRule } from 'prosemirror-inputrules'
export {
  ySyncPlugin, ySyncPluginKey, yCursorPlugin, yUndoPlugin, undoCommand, redoCommand,
  prosemirrorToYXmlFragment, yXmlFragmentToProseMirrorRootNode, initProseMirrorDoc
} from 'y-prosemirror'
