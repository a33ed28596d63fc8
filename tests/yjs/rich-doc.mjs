// rich-doc.mjs makes a rich-text document for the browser tests: the
// Y.XmlFragment "prosemirror" that the document page's editor binds, filled
// with paragraphs of text until the whole document as one update is at
// least the bytes asked for.
//
// stdin:  {"bytes": 1048576}
// stdout: {"update": "<base64>", "paragraphs": n, "chars": n} (chars: the
//         text's length, paragraphs not counted)
import * as Y from 'yjs'
import { readStdin } from './oracle-common.mjs'

const { bytes } = JSON.parse(await readStdin())
if (!Number.isInteger(bytes) || bytes < 1 || bytes > 64 << 20) throw new Error('bytes: 1 to 64 MiB')

const doc = new Y.Doc()
const fragment = doc.getXmlFragment('prosemirror')
const words = ['room', 'document', 'cursor', 'paragraph', 'version', 'history', 'restore', 'board', 'stroke', 'team', 'edit', 'live']
let paragraphs = 0
let chars = 0
// Paragraphs go in batches; the size is measured after each.
while (Y.encodeStateAsUpdate(doc).length < bytes) {
  const batch = []
  for (let i = 0; i < 200; i++) {
    const n = paragraphs + i
    const text = `Paragraph ${n}: ` + Array.from({ length: 12 }, (_, j) => words[(n * 7 + j * 5) % words.length]).join(' ') + '.'
    const p = new Y.XmlElement('paragraph')
    p.insert(0, [new Y.XmlText(text)])
    batch.push(p)
    chars += text.length
  }
  fragment.insert(fragment.length, batch)
  paragraphs += batch.length
}
process.stdout.write(JSON.stringify({ update: Buffer.from(Y.encodeStateAsUpdate(doc)).toString('base64'), paragraphs, chars }))
