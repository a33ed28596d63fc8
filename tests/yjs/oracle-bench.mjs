// oracle-bench.mjs builds the inputs of rooms/yjs's benchmarks: a Yjs
// document of about 1 MB (three clients editing rich text and a map),
// then 100 small edits to it, as JSON on stdout:
// {"doc": b64, "updates": [b64...], "final": b64, "svBeforeLast": b64}
import * as Y from 'yjs'
import { b64, rng } from './oracle-common.mjs'

const r = rng(2024)
const docs = [new Y.Doc(), new Y.Doc(), new Y.Doc()]
docs.forEach(d => { d.clientID = r.uint32() })
const words = ['lorem', 'ipsum', 'dolor', 'sit', 'amet', 'consectetur', 'adipiscing', 'élit', 'sed', 'do', '😀', 'eiusmod', 'tempor', '中文', 'incididunt']
const sentence = () => {
  const n = 5 + r.int(40)
  const w = []
  for (let i = 0; i < n; i++) w.push(r.pick(words))
  return w.join(' ') + '. '
}
const syncAll = () => {
  for (const a of docs) for (const b of docs) if (a !== b) Y.applyUpdate(b, Y.encodeStateAsUpdate(a, Y.encodeStateVector(b)))
}
let size = 0
for (let round = 0; size < 1000000; round++) {
  for (let i = 0; i < 200; i++) {
    const d = r.pick(docs)
    const t = d.getText('text')
    const k = r.int(10)
    if (k < 6 || t.length < 100) {
      t.insert(r.int(t.length + 1), sentence(), r.bool(0.2) ? { bold: true } : undefined)
    } else if (k < 8) {
      t.delete(r.int(t.length - 50), 1 + r.int(40))
    } else if (k < 9) {
      t.format(r.int(t.length - 50), 1 + r.int(40), { italic: r.bool() || null })
    } else {
      d.getMap('map').set('k' + r.int(500), { n: r.int(1000), s: sentence() })
    }
  }
  syncAll()
  size = Y.encodeStateAsUpdate(docs[0]).length
}
const doc = Y.encodeStateAsUpdate(docs[0])
const updates = []
const d = docs[0]
d.on('update', u => updates.push(u))
let svBeforeLast
for (let i = 0; i < 100; i++) {
  if (i === 99) svBeforeLast = Y.encodeStateVector(d)
  const t = d.getText('text')
  if (r.bool(0.8)) t.insert(r.int(t.length + 1), r.pick(words))
  else t.delete(r.int(t.length - 5), 1 + r.int(3))
}
process.stdout.write(JSON.stringify({ doc: b64(doc), updates: updates.map(b64), final: b64(Y.encodeStateAsUpdate(d)), svBeforeLast: b64(svBeforeLast) }))
