// oracle-view.mjs generates random concurrent editing histories with real
// Y.Docs and what yjs's toJSON() gives for every top-level type, as JSON
// on stdout for rooms/yjs's JSON view oracle test. Each case holds the
// updates the clients sent (what a server stores), one client's
// Y.encodeStateAsUpdate, and the expected JSON read from a fresh Y.Doc
// that applied that state. Everything is seeded: the output is the same
// on every run.
//
// Usage: node oracle-view.mjs [cases]   (default 240)
//        node oracle-view.mjs bench     a 1 MiB document made by 10,000 edits
import * as Y from 'yjs'
import { b64, rng } from './oracle-common.mjs'

const ALPHABET = ['a', 'b', 'c', ' ', 'é', 'ß', '中', '😀', '👍🏽', '\n', 'x', '"', '\\', '<', '\t']
const KEYS = ['a', 'b', 'c', 'title', 'ü', '1', '10', '02', 'key with space']

const randText = (r, n) => {
  let s = ''
  for (let i = 0; i < n; i++) s += r.pick(ALPHABET)
  return s
}

const randValue = (r, depth = 0) => {
  switch (r.int(depth > 2 ? 8 : 11)) {
    case 0: return r.int(2000) - 1000
    case 1: return r.next() * 1e6 - 5e5
    case 2: return randText(r, r.int(5))
    case 3: return r.bool()
    case 4: return null
    case 5: return r.pick([2 ** 40, -(2 ** 33), 0.1, 1e300, 1e-7, 1e21, -0.5, 2147483647, -2147483648, 5e-324])
    case 6: return r.pick([undefined, new Uint8Array([1, 2, r.int(256)]), new Uint8Array([])])
    case 7: return r.pick(['ünï€ødé 😀', '', 'line\nbreak', 'ctl\u0001\u001f'])
    case 8: return [randValue(r, depth + 1), randValue(r, depth + 1)]
    case 9: {
      const o = {}
      for (let i = r.int(5); i > 0; i--) o[r.pick(KEYS)] = randValue(r, depth + 1)
      return o
    }
    default: return { nested: [randValue(r, depth + 1)], n: r.int(10) }
  }
}
const arrVal = r => { const v = randValue(r); return v === undefined ? null : v }
const randAttrs = r => r.pick([{ bold: true }, { italic: {} }, { bold: null }, { color: '#f00' }, { link: { href: 'https://example.com/ü', rel: 'x' } }, { size: 12.5 }])

// a random index of t on a code point boundary
const units = t => { let s = ''; for (const op of t.toDelta()) s += typeof op.insert === 'string' ? op.insert : '\u0001'; return s }
const snap = (s, i) => (i > 0 && i < s.length && s.charCodeAt(i - 1) >= 0xd800 && s.charCodeAt(i - 1) <= 0xdbff ? i - 1 : i)
const snapIndex = (r, t) => { const s = units(t); return snap(s, r.int(s.length + 1)) }
const snapRange = (r, t, maxLen) => {
  const s = units(t)
  if (s.length === 0) return null
  const i = snap(s, r.int(s.length))
  const j = snap(s, Math.min(s.length, i + 1 + r.int(maxLen)))
  return j > i ? [i, j - i] : (i + 2 <= s.length ? [i, 2] : null)
}

const textEdit = (t, r) => {
  const k = r.int(10)
  if (k < 5 || t.length === 0) {
    const s = randText(r, 1 + r.int(r.bool(0.2) ? 10 : 3))
    t.insert(snapIndex(r, t), s, r.bool(0.25) ? randAttrs(r) : undefined)
  } else if (k < 8) {
    const rg = snapRange(r, t, 5)
    if (rg) t.delete(rg[0], rg[1])
  } else if (k < 9) {
    const rg = snapRange(r, t, 6)
    if (rg) t.format(rg[0], rg[1], randAttrs(r))
  } else if (!(t instanceof Y.XmlText)) {
    t.insertEmbed(snapIndex(r, t), r.pick([{ image: 'p' + r.int(9) + '.png' }, { formula: 'e=mc^2', n: [1, 2] }]))
  }
}

const newNested = r => {
  switch (r.int(4)) {
    case 0: { const m = new Y.Map(); m.set(r.pick(KEYS), randValue(r)); return m }
    case 1: { const a = new Y.Array(); a.insert(0, [arrVal(r), arrVal(r)]); return a }
    case 2: { const t = new Y.Text(); t.insert(0, randText(r, 3)); return t }
    default: return new Y.Map()
  }
}

const editNested = (v, r) => {
  if (v instanceof Y.Map) {
    if (r.bool(0.7)) v.set(r.pick(KEYS), r.bool(0.15) ? newNested(r) : randValue(r))
    else v.delete(r.pick(KEYS))
  } else if (v instanceof Y.Array) {
    if (r.bool(0.65) || v.length === 0) v.insert(r.int(v.length + 1), r.bool(0.15) ? [newNested(r)] : [arrVal(r), arrVal(r)])
    else v.delete(r.int(v.length), 1)
  } else if (v instanceof Y.Text) {
    textEdit(v, r)
  }
}

const mapOp = (doc, r) => {
  const m = doc.getMap('map')
  const key = r.pick(KEYS)
  const k = r.int(12)
  if (k < 5) m.set(key, randValue(r))
  else if (k < 7) m.delete(key)
  else if (k < 9) m.set(key, newNested(r))
  else if (k === 11 && r.bool(0.3)) m.set(key, new Y.Doc({ guid: 'sub-' + r.int(100) }))
  else {
    const v = m.get(key)
    if (v instanceof Y.AbstractType) editNested(v, r)
    else m.set(key, randText(r, 2))
  }
}

const arrayOp = (doc, r) => {
  const a = doc.getArray('arr')
  const len = a.length
  const k = r.int(10)
  if (k < 5 || len === 0) {
    const vals = []
    for (let i = 1 + r.int(4); i > 0; i--) vals.push(arrVal(r))
    a.insert(r.int(len + 1), vals)
  } else if (k < 7) {
    const i = r.int(len)
    a.delete(i, 1 + r.int(Math.min(len - i, 3)))
  } else if (k < 8) {
    a.insert(r.int(len + 1), [newNested(r)])
  } else if (k < 9) {
    a.push([new Uint8Array([r.int(256), 7])])
  } else {
    const v = a.get(r.int(len))
    if (v instanceof Y.AbstractType) editNested(v, r)
    else a.insert(r.int(len + 1), [arrVal(r)])
  }
}

const xmlOp = (doc, r) => {
  const f = doc.getXmlFragment('xml')
  const k = r.int(10)
  const elems = f.toArray().filter(e => e instanceof Y.XmlElement)
  if (k < 3 || elems.length === 0) {
    const e = new Y.XmlElement(r.pick(['p', 'H1', 'li', 'blockquote']))
    e.setAttribute('id', 'n' + r.int(1000))
    const tx = new Y.XmlText()
    tx.insert(0, randText(r, 3))
    e.insert(0, [tx])
    f.insert(r.int(f.length + 1), [e])
  } else if (k < 4) {
    f.delete(r.int(f.length), 1)
  } else if (k < 6) {
    const e = r.pick(elems)
    if (r.bool(0.7)) e.setAttribute(r.pick(['class', 'style', 'data-x', 'Z', 'ä']), r.pick([randText(r, 2), 'v']))
    else e.removeAttribute(r.pick(['class', 'style', 'data-x']))
  } else if (k < 9) {
    const e = r.pick(elems)
    const tx = e.toArray().find(c => c instanceof Y.XmlText)
    if (!tx) {
      const t = new Y.XmlText()
      t.insert(0, randText(r, 2))
      e.push([t])
    } else if (r.bool(0.5)) {
      textEdit(tx, r)
    } else {
      const rg = snapRange(r, tx, 6)
      if (rg) tx.format(rg[0], rg[1], r.pick([{ bold: true }, { italic: {} }, { bold: null }, { a: { href: 'x', title: 'y' } }]))
    }
  } else {
    const e = r.pick(elems)
    const child = new Y.XmlElement('span')
    child.setAttribute('k', 'v')
    e.insert(0, r.bool(0.3) ? [child, new Y.XmlHook('mention')] : [child])
  }
}

const textOp = (doc, r) => textEdit(doc.getText('text'), r)
const notesOp = (doc, r) => textEdit(doc.getText('notes'), r)

// the top-level types of every case, with how to read them
const ROOTS = { text: 'getText', notes: 'getText', map: 'getMap', arr: 'getArray', xml: 'getXmlFragment' }

const mixed = (doc, r) => {
  const f = r.pick([textOp, textOp, notesOp, mapOp, mapOp, arrayOp, arrayOp, xmlOp])
  if (r.bool(0.15)) doc.transact(() => { f(doc, r); f(doc, r) })
  else f(doc, r)
}

const runCase = seed => {
  const r = rng(seed)
  const n = 2 + r.int(4)
  const gc = r.bool(0.8)
  const docs = []
  const queues = []
  const updates = []
  for (let i = 0; i < n; i++) {
    const doc = new Y.Doc({ gc })
    // low client IDs now and then, so ties between clients are common
    doc.clientID = r.bool(0.3) ? 1 + r.int(6) + i * 7 : r.uint32()
    const idx = i
    doc.on('update', (u, origin) => {
      if (origin === 'remote') return
      updates.push(u)
      for (let j = 0; j < n; j++) if (j !== idx) queues[j].push(u)
    })
    docs.push(doc)
    queues.push([])
  }
  const ops = 10 + r.int(seed % 10 === 0 ? 400 : 80)
  for (let i = 0; i < ops; i++) {
    mixed(r.pick(docs), r)
    if (r.bool(0.35)) {
      // deliver some queued updates to one client, out of order
      const to = r.int(n)
      const q = queues[to]
      for (let k = r.int(q.length + 1); k > 0 && q.length > 0; k--) {
        const [u] = q.splice(r.bool(0.6) ? 0 : r.int(q.length), 1)
        Y.applyUpdate(docs[to], u, 'remote')
      }
    }
  }
  // sync everything, in a random order per client
  for (let to = 0; to < n; to++) {
    const q = queues[to]
    while (q.length > 0) Y.applyUpdate(docs[to], q.splice(r.int(q.length), 1)[0], 'remote')
  }
  const state = Y.encodeStateAsUpdate(docs[r.int(n)])
  const fresh = new Y.Doc()
  Y.applyUpdate(fresh, state)
  const expected = {}
  for (const [name, get] of Object.entries(ROOTS)) expected[name] = JSON.stringify(fresh[get](name).toJSON())
  // object key order follows each doc's integration order: compare
  // with sorted keys
  const sorted = s => JSON.stringify(JSON.parse(s), (k, v) => v && typeof v === 'object' && !Array.isArray(v) ? Object.fromEntries(Object.entries(v).sort()) : v)
  for (const d of docs) {
    for (const [name, get] of Object.entries(ROOTS)) {
      if (sorted(JSON.stringify(d[get](name).toJSON())) !== sorted(expected[name])) throw new Error(`case ${seed}: clients did not converge on ${name}`)
    }
  }
  return { seed, gc, clients: n, ops, updates: updates.map(b64), state: b64(state), expected }
}

// benchDoc is the benchmark's document: three clients make 10,000 edits
// (mostly typing and pasting text, with deletions, formatting, map and
// array edits), syncing now and then, until the document is about 1 MiB.
const asciiText = (r, n) => {
  let s = ''
  for (let i = 0; i < n; i++) s += String.fromCharCode(32 + r.int(95))
  return s
}

const benchDoc = () => {
  const r = rng(2026)
  const docs = [1, 2, 3].map(i => { const d = new Y.Doc(); d.clientID = 1000 + i; return d })
  const updates = []
  docs.forEach(d => d.on('update', (u, origin) => { if (origin !== 'remote') updates.push(u) }))
  let synced = 0
  for (let i = 0; i < 10000; i++) {
    const d = r.pick(docs)
    const t = d.getText('text')
    const k = r.int(100)
    // ASCII only: indices need no snapping to code points, which
    // would read the whole text at every edit
    const len = t.length
    if (k < 70 || len < 100) {
      t.insert(r.int(len + 1), asciiText(r, r.bool(0.1) ? 500 + r.int(1100) : 1 + r.int(40)), r.bool(0.05) ? randAttrs(r) : undefined)
    } else if (k < 85) {
      const i = r.int(len - 30)
      t.delete(i, 1 + r.int(30))
    } else if (k < 90) {
      const i = r.int(len - 50)
      t.format(i, 1 + r.int(50), randAttrs(r))
    } else if (k < 95) {
      mapOp(d, r)
    } else {
      arrayOp(d, r)
    }
    if (r.bool(0.05)) {
      for (const u of updates.slice(synced)) docs.forEach(o => Y.applyUpdate(o, u, 'remote'))
      synced = updates.length
    }
  }
  for (const u of updates.slice(synced)) docs.forEach(o => Y.applyUpdate(o, u, 'remote'))
  const state = Y.encodeStateAsUpdate(docs[0])
  const expected = {}
  for (const [name, get] of Object.entries(ROOTS)) expected[name] = JSON.stringify(docs[0][get](name).toJSON())
  return { edits: 10000, updates: updates.map(b64), state: b64(state), expected }
}

if (process.argv[2] === 'bench') {
  process.stdout.write(JSON.stringify(benchDoc()))
} else {
  const count = process.argv.length > 2 ? Number(process.argv[2]) : 240
  const cases = []
  for (let i = 1; i <= count; i++) cases.push(runCase(i))
  process.stdout.write(JSON.stringify({ cases }))
}
