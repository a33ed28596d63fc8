// oracle-gen.mjs generates realistic Yjs updates from real Y.Docs edited
// concurrently by several clients, and the results of the yjs update
// algebra on them (Y.mergeUpdates, Y.diffUpdate,
// Y.encodeStateVectorFromUpdate), as JSON on stdout for
// rooms/yjs's oracle tests. Everything is seeded: the output is the same on
// every run.
//
// Usage: node oracle-gen.mjs [scenario...]   (default: all)
import { readFileSync, writeFileSync } from 'node:fs'
import * as Y from 'yjs'
import * as syncProtocol from 'y-protocols/sync'
import * as awarenessProtocol from 'y-protocols/awareness'
import * as encoding from 'lib0/encoding'
import { b64, rng, content } from './oracle-common.mjs'

const ALPHABET = ['a', 'b', 'c', ' ', 'é', 'ß', '中', '文', '😀', '👍🏽', '𝄞', '\n', 'x', 'y', '🇩🇪']

// A simulation of n clients with their own Y.Doc. Every update a client
// emits for a local transaction is recorded (what a y-websocket server
// receives) and queued for every other client; deliveries happen in a
// random order, with occasional full state-vector syncs.
class Sim {
  constructor (n, r, { gc = true } = {}) {
    this.r = r
    this.docs = []
    this.updates = []
    this.queues = [] // queues[to] = [{update}]
    this.captures = [] // {state, sv}: a client's state and state vector at some point
    for (let i = 0; i < n; i++) {
      const doc = new Y.Doc({ gc })
      doc.clientID = r.uint32()
      const idx = i
      doc.on('update', (u, origin) => {
        if (origin === 'remote') return
        this.updates.push(u)
        for (let j = 0; j < n; j++) if (j !== idx) this.queues[j].push(u)
      })
      this.docs.push(doc)
      this.queues.push([])
    }
  }

  // deliver some queued updates, out of order.
  deliver () {
    const r = this.r
    const to = r.int(this.docs.length)
    const q = this.queues[to]
    let k = r.int(q.length + 1)
    while (k-- > 0 && q.length > 0) {
      const i = r.bool(0.7) ? 0 : r.int(q.length)
      const [u] = q.splice(i, 1)
      Y.applyUpdate(this.docs[to], u, 'remote')
    }
  }

  // a full sync step 1/2 exchange from a to b; the step-2 update is
  // recorded too (the server receives those).
  syncPair (a, b) {
    const da = this.docs[a]
    const db = this.docs[b]
    const u = Y.encodeStateAsUpdate(da, Y.encodeStateVector(db))
    this.updates.push(u)
    Y.applyUpdate(db, u, 'remote')
  }

  capture () {
    const d = this.r.pick(this.docs)
    this.captures.push({ state: Y.encodeStateAsUpdate(d), sv: Y.encodeStateVector(d) })
  }

  step (op) {
    const r = this.r
    op(r.pick(this.docs), r)
    if (r.bool(0.3)) this.deliver()
    if (r.bool(0.03)) this.syncPair(r.int(this.docs.length), r.int(this.docs.length))
    if (r.bool(0.04)) this.capture()
  }

  // deliver everything and check convergence.
  finish () {
    for (let to = 0; to < this.docs.length; to++) {
      for (const u of this.queues[to]) Y.applyUpdate(this.docs[to], u, 'remote')
      this.queues[to] = []
    }
    const want = content(this.docs[0])
    for (const d of this.docs) {
      if (content(d) !== want) { writeFileSync("/tmp/conv.json", JSON.stringify([want, content(d)])); throw new Error("clients did not converge") }
    }
    return want
  }
}

const randText = (r, n) => {
  let s = ''
  for (let i = 0; i < n; i++) s += r.pick(ALPHABET)
  return s
}

const randAttrs = r => r.pick([
  { bold: true }, { italic: true }, { bold: null }, { color: '#f00' }, { link: { href: 'https://example.com/ü' } }, { size: 12.5 }
])

const randJSON = (r, depth = 0) => {
  switch (r.int(depth > 2 ? 7 : 10)) {
    case 0: return r.int(1000) - 500
    case 1: return r.next() * 1e6 - 5e5
    case 2: return randText(r, r.int(6))
    case 3: return r.bool()
    case 4: return null
    case 5: return r.pick([2 ** 40, -(2 ** 33), 0.1, 1e300, -0.5, 2147483647, -2147483648])
    case 6: return r.pick([undefined, new Uint8Array([1, 2, 3, r.int(256)]), 'ünï€ødé 😀'])
    case 7: return [randJSON(r, depth + 1), randJSON(r, depth + 1)]
    case 8: {
      const o = {}
      for (let i = r.int(4); i > 0; i--) o[r.pick(['a', 'b', '1', '10', 'ключ', 'z'])] = randJSON(r, depth + 1)
      return o
    }
    default: return { nested: [randJSON(r, depth + 1)] }
  }
}

// Yjs replicas diverge when a client splits a surrogate pair by index
// (each replica applies the U+FFFD fix only to the splits it makes), so
// the editing operations keep their indices on code point boundaries.
// Splits inside pairs are exercised through diffUpdate with random state
// vectors instead, which is deterministic.
const units = t => {
  let s = ''
  for (const op of t.toDelta()) s += typeof op.insert === 'string' ? op.insert : '\u0001'
  return s
}
const snap = (s, i) => (i > 0 && i < s.length && s.charCodeAt(i - 1) >= 0xd800 && s.charCodeAt(i - 1) <= 0xdbff ? i - 1 : i)
// a random index in [0, len] on a code point boundary
const snapIndex = (r, t) => { const s = units(t); return snap(s, r.int(s.length + 1)) }
// a random non-empty range [i, i+n) on code point boundaries, or null
const snapRange = (r, t, maxLen) => {
  const s = units(t)
  if (s.length === 0) return null
  const i = snap(s, r.int(s.length))
  const j = snap(s, Math.min(s.length, i + 1 + r.int(maxLen)))
  return j > i ? [i, j - i] : (i + 2 <= s.length ? [i, 2] : null)
}

// arrVal is a random value that Y.Array.insert accepts (not undefined).
const arrVal = r => {
  const v = randJSON(r)
  return v === undefined ? null : v
}

// --- operations on the shared types ---

const textOp = (doc, r) => {
  const t = doc.getText('text')
  const len = t.length
  const k = r.int(10)
  if (k < 5 || len === 0) {
    const s = randText(r, 1 + r.int(r.bool(0.2) ? 12 : 3))
    if (r.bool(0.2)) t.insert(snapIndex(r, t), s, randAttrs(r))
    else t.insert(snapIndex(r, t), s)
  } else if (k < 8) {
    const rg = snapRange(r, t, 6)
    if (rg) t.delete(rg[0], rg[1])
  } else if (k < 9) {
    const rg = snapRange(r, t, 8)
    if (rg) t.format(rg[0], rg[1], randAttrs(r))
  } else {
    t.insertEmbed(snapIndex(r, t), { image: 'p' + r.int(100) + '.png' })
  }
}

const KEYS = ['a', 'b', 'c', 'd', 'title', 'ü']

const mapOp = (doc, r) => {
  const m = doc.getMap('map')
  const k = r.int(12)
  const key = r.pick(KEYS)
  if (k < 5) {
    m.set(key, randJSON(r))
  } else if (k < 7) {
    m.delete(key)
  } else if (k < 8) {
    const inner = new Y.Map()
    inner.set('x', randJSON(r))
    m.set(key, inner)
  } else if (k < 9) {
    const inner = new Y.Array()
    inner.insert(0, [arrVal(r), arrVal(r)])
    m.set(key, inner)
  } else {
    // edit a nested type if there is one
    const v = m.get(key)
    if (v instanceof Y.Map) {
      if (r.bool(0.7)) v.set(r.pick(KEYS), randJSON(r))
      else v.delete(r.pick(KEYS))
    } else if (v instanceof Y.Array) {
      if (r.bool(0.6) || v.length === 0) v.insert(r.int(v.length + 1), [arrVal(r)])
      else v.delete(r.int(v.length), 1)
    } else {
      m.set(key, randText(r, 3))
    }
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
  } else if (k < 8) {
    const i = r.int(len)
    a.delete(i, 1 + r.int(Math.min(len - i, 3)))
  } else if (k < 9) {
    const t = new Y.Text()
    t.insert(0, randText(r, 4))
    a.insert(r.int(len + 1), [t])
  } else {
    const v = a.get(r.int(len))
    if (v instanceof Y.Text) {
      const rg = snapRange(r, v, 2)
      if (rg && r.bool(0.4)) v.delete(rg[0], rg[1])
      else v.insert(snapIndex(r, v), randText(r, 2))
    } else {
      a.push([new Uint8Array([r.int(256)])])
    }
  }
}

const xmlOp = (doc, r) => {
  const f = doc.getXmlFragment('xml')
  const k = r.int(10)
  const elems = f.toArray().filter(e => e instanceof Y.XmlElement)
  if (k < 3 || elems.length === 0) {
    const e = new Y.XmlElement(r.pick(['p', 'h1', 'li', 'blockquote']))
    e.setAttribute('id', 'n' + r.int(1000))
    const tx = new Y.XmlText()
    tx.insert(0, randText(r, 3))
    e.insert(0, [tx])
    f.insert(r.int(f.length + 1), [e])
  } else if (k < 4) {
    f.delete(r.int(f.length), 1)
  } else if (k < 6) {
    const e = r.pick(elems)
    if (r.bool(0.7)) e.setAttribute(r.pick(['class', 'style', 'data-x']), randText(r, 2))
    else e.removeAttribute(r.pick(['class', 'style', 'data-x']))
  } else if (k < 9) {
    const e = r.pick(elems)
    const tx = e.toArray().find(c => c instanceof Y.XmlText)
    if (!tx) {
      const t = new Y.XmlText()
      t.insert(0, randText(r, 2))
      e.push([t])
    } else if (tx.length > 0 && r.bool(0.3)) {
      const rg = snapRange(r, tx, 2)
      if (rg) tx.delete(rg[0], rg[1])
    } else if (tx.length > 0 && r.bool(0.3)) {
      const rg = snapRange(r, tx, 6)
      if (rg) tx.format(rg[0], rg[1], r.pick([{ bold: true }, { italic: {} }, { bold: null }]))
    } else {
      tx.insert(snapIndex(r, tx), randText(r, 2), r.bool(0.3) ? { bold: true } : undefined)
    }
  } else {
    const e = r.pick(elems)
    const child = new Y.XmlElement('span')
    child.setAttribute('k', 'v')
    e.insert(0, [child, new Y.XmlHook('mention')])
  }
}

const subdocOp = (doc, r) => {
  const m = doc.getMap('map')
  if (r.bool(0.7)) {
    m.set('sub' + r.int(3), new Y.Doc({ guid: 'guid-' + r.int(1000), meta: r.bool() ? { kind: 'page' } : null, autoLoad: r.bool() }))
  } else {
    m.delete('sub' + r.int(3))
  }
}

// gcOp creates nested types and throws them away, so that documents
// with gc on hold many GC structs.
const gcOp = (doc, r) => {
  const m = doc.getMap('map')
  const key = r.pick(KEYS)
  const k = r.int(10)
  if (k < 4) {
    const inner = new Y.Array()
    const vals = []
    for (let i = 1 + r.int(5); i > 0; i--) vals.push(arrVal(r))
    inner.insert(0, vals)
    const t = new Y.Text()
    t.insert(0, randText(r, 1 + r.int(8)))
    inner.push([t])
    m.set(key, inner)
  } else if (k < 6) {
    const inner = new Y.Map()
    inner.set('a', randJSON(r))
    inner.set('b', new Y.Map())
    m.set(key, inner)
  } else if (k < 8) {
    m.delete(key)
  } else {
    const v = m.get(key)
    if (v instanceof Y.Array) v.push([arrVal(r), arrVal(r)])
    else if (v instanceof Y.Map) v.set(r.pick(KEYS), randText(r, 2))
    else textOp(doc, r)
  }
}

const mixedOp = (doc, r) => {
  const f = r.pick([textOp, textOp, mapOp, arrayOp, xmlOp, gcOp])
  if (r.bool(0.15)) {
    // several operations in one transaction
    doc.transact(() => { f(doc, r); f(doc, r) })
  } else {
    f(doc, r)
  }
}

// --- the results that Go must reproduce ---

const shuffled = (r, arr) => {
  const a = arr.slice()
  for (let i = a.length - 1; i > 0; i--) {
    const j = r.int(i + 1)
    ;[a[i], a[j]] = [a[j], a[i]]
  }
  return a
}

// randomSV makes a state vector with clocks anywhere inside what update
// holds, to make diffUpdate slice structs (also inside surrogate pairs).
const randomSV = (r, update) => {
  const sv = Y.decodeStateVector(Y.encodeStateVectorFromUpdate(update))
  const out = new Map()
  for (const [client, clock] of sv) {
    if (r.bool(0.8)) out.set(client, r.int(clock + 2))
  }
  if (r.bool(0.3)) out.set(r.uint32(), 5)
  return encodeSV(out)
}

const encodeSV = sv => {
  // the v1 state vector encoding: varUint count, (varUint client, varUint clock)*
  const bytes = []
  const varUint = n => {
    while (n > 127) { bytes.push(0x80 | (n % 128)); n = Math.floor(n / 128) }
    bytes.push(n)
  }
  varUint(sv.size)
  for (const [c, k] of sv) { varUint(c); varUint(k) }
  return new Uint8Array(bytes)
}

const scenario = (name, { seed, clients = 3, ops, op, gc = true, script }) => {
  const r = rng(seed)
  const sim = new Sim(clients, r, { gc })
  if (script) script(sim)
  for (let i = 0; i < ops; i++) sim.step(op)
  const want = sim.finish()
  sim.capture()

  const pool = []
  const add = u => { pool.push(b64(u)); return pool.length - 1 }
  const updates = sim.updates.map(add)
  const states = sim.docs.map(d => add(Y.encodeStateAsUpdate(d)))
  const merged = Y.mergeUpdates(sim.updates)
  const mergedIdx = add(merged)

  const mergeCases = []
  const mergeCase = idxs => {
    const out = Y.mergeUpdates(idxs.map(i => Buffer.from(pool[i], 'base64')))
    mergeCases.push({ inputs: idxs, expected: b64(out) })
    return out
  }
  mergeCase(updates)
  mergeCase(shuffled(r, updates))
  mergeCase(states)
  mergeCase([...states, ...updates])
  mergeCase(shuffled(r, [...states, ...updates]))
  for (let i = 0; i < 8; i++) {
    // random subsets: gaps in the clocks become Skip structs
    const sub = updates.filter(() => r.bool(0.5))
    const m = mergeCase(shuffled(r, sub))
    pool.push(b64(m))
  }
  // merges of merges and of sliced diffs
  const diffCases = []
  const captured = []
  for (const c of sim.captures) {
    const out = Y.diffUpdate(merged, c.sv)
    const base = add(c.state)
    captured.push(base)
    diffCases.push({ update: mergedIdx, sv: b64(c.sv), expected: b64(out), base })
  }
  // states of different times overlap: with gc on their GC structs
  // differ in length, so they are sliced and merged
  mergeCase([...captured, ...states])
  mergeCase(shuffled(r, [...captured, ...states]))
  mergeCase(shuffled(r, [...captured, ...updates]))
  for (let i = 0; i < 12; i++) {
    const u = i % 2 === 0 ? merged : Buffer.from(r.pick(pool), 'base64')
    const sv = randomSV(r, u)
    const out = Y.diffUpdate(u, sv)
    const idx = add(u)
    diffCases.push({ update: idx, sv: b64(sv), expected: b64(out) })
    const d = add(out)
    mergeCase([d, mergedIdx])
    mergeCase([mergedIdx, d])
    mergeCase([d, ...states])
  }
  for (let i = 0; i < 4; i++) {
    mergeCase(shuffled(r, pool.map((_, j) => j)).slice(0, 2 + r.int(6)))
  }
  // the empty state vector
  diffCases.push({ update: mergedIdx, sv: b64(encodeSV(new Map())), expected: b64(Y.diffUpdate(merged, encodeSV(new Map()))) })

  const svCases = pool.map((p, i) => ({ update: i, expected: b64(Y.encodeStateVectorFromUpdate(Buffer.from(p, 'base64'))) }))
  return {
    name,
    content: want,
    pool,
    updates,
    states,
    merged: mergedIdx,
    mergeCases,
    diffCases,
    svCases,
    stateAsUpdateLength: Y.encodeStateAsUpdate(sim.docs[0]).length
  }
}

// history is a long editing session: many small edits, many of them
// deletions, as one client's keystrokes (plus a second client now and
// then), for the compaction ratio test.
const history = (name, { seed, edits }) => {
  const r = rng(seed)
  const sim = new Sim(2, r)
  const [a, b] = sim.docs
  let cursor = 0
  for (let i = 0; i < edits; i++) {
    const d = r.bool(0.9) ? a : b
    const t = d.getText('text')
    const len = t.length
    const u = units(t)
    if (r.bool(0.05)) cursor = r.int(len + 1)
    cursor = snap(u, Math.min(cursor, len))
    const k = r.int(100)
    if (k < 58 || len === 0) {
      const s = randText(r, 1 + (r.bool(0.1) ? r.int(5) : 0))
      t.insert(cursor, s)
      cursor += s.length
    } else if (k < 93) {
      const from = snap(u, Math.max(0, cursor - 1 - r.int(r.bool(0.1) ? 20 : 2)))
      if (from < cursor) { t.delete(from, cursor - from); cursor = from }
    } else if (k < 97) {
      const rg = snapRange(r, t, 10)
      if (rg) t.format(rg[0], rg[1], randAttrs(r))
    } else {
      d.getMap('map').set(r.pick(KEYS), randJSON(r))
    }
    if (r.bool(0.5)) sim.deliver()
  }
  const want = sim.finish()
  return {
    name,
    content: want,
    pool: sim.updates.map(b64),
    updates: sim.updates.map((_, i) => i),
    merged: -1,
    mergedExpected: b64(Y.mergeUpdates(sim.updates)),
    stateAsUpdateLength: Y.encodeStateAsUpdate(a).length,
    historyEdits: edits
  }
}

// sortCases sorts arrays of struct keys with the comparator of
// mergeUpdatesV2 and V8's Array.prototype.sort, to pin down how Go's port
// orders decoders, including the inconsistent GC/Item tie. Arrays of 64
// or more have no such ties (Go only reproduces V8 exactly below 64).
const sortCases = () => {
  const r = rng(77)
  const cmp = (a, b) => {
    if (a.client === b.client) {
      const d = a.clock - b.clock
      if (d === 0) return a.kind === b.kind ? 0 : a.kind === 'skip' ? 1 : -1
      return d
    }
    return b.client - a.client
  }
  const cases = []
  for (let i = 0; i < 300; i++) {
    const big = i % 10 === 9
    const n = big ? 64 + r.int(100) : 1 + r.int(63)
    const keys = []
    for (let j = 0; j < n; j++) {
      const kind = big ? 'item' : r.pick(['gc', 'item', 'item', 'skip'])
      keys.push({ client: r.int(4), clock: r.int(big ? 40 : 4), kind, i: j })
    }
    if (r.bool(0.5)) keys.sort(cmp) // presorted, like later rounds
    if (r.bool(0.5)) keys.unshift(keys.splice(r.int(keys.length), 1)[0])
    const input = keys.map(k => [k.client, k.clock, k.kind])
    const sorted = keys.slice().sort(cmp)
    cases.push({ input, perm: sorted.map(k => keys.indexOf(k)) })
  }
  return cases
}

// messages builds y-websocket frames with y-protocols, as clients send them.
const messages = () => {
  const doc = new Y.Doc()
  doc.clientID = 3141592653
  doc.getText('text').insert(0, 'hello 😀 wörld')
  doc.getMap('map').set('k', { a: [1, 'two', null], b: 2.5 })
  const update = Y.encodeStateAsUpdate(doc)
  const frames = []
  const frame = (type, sync, payload, write) => {
    const e = encoding.createEncoder()
    encoding.writeVarUint(e, type)
    write(e)
    frames.push({ type, sync, frame: b64(encoding.toUint8Array(e)), payload: b64(payload) })
  }
  frame(0, 0, Y.encodeStateVector(doc), e => syncProtocol.writeSyncStep1(e, doc))
  frame(0, 1, Y.encodeStateAsUpdate(doc, new Uint8Array([0])), e => syncProtocol.writeSyncStep2(e, doc, new Uint8Array([0])))
  frame(0, 2, update, e => syncProtocol.writeUpdate(e, update))
  frame(0, 1, Y.encodeStateAsUpdate(new Y.Doc()), e => syncProtocol.writeSyncStep2(e, new Y.Doc(), new Uint8Array([0])))

  const a = new awarenessProtocol.Awareness(doc)
  const other = new Y.Doc()
  other.clientID = 7
  const b = new awarenessProtocol.Awareness(other)
  a.setLocalState({ user: { name: 'Zoë 👩‍💻', color: '#ff0' }, cursor: null, n: [1, 2.5, true] })
  b.setLocalState({ user: { name: 'B' } })
  awarenessProtocol.applyAwarenessUpdate(a, awarenessProtocol.encodeAwarenessUpdate(b, [7]), 'remote')
  const awareness = []
  const aw = clients => {
    const u = awarenessProtocol.encodeAwarenessUpdate(a, clients)
    awareness.push({
      update: b64(u),
      entries: clients.map(c => ({ client: c, clock: a.meta.get(c).clock, state: JSON.stringify(a.getStates().get(c) || null) }))
    })
    frame(1, 0, u, e => encoding.writeVarUint8Array(e, u))
  }
  aw([doc.clientID])
  aw([doc.clientID, 7])
  a.setLocalState(null)
  aw([doc.clientID])
  frame(3, 0, new Uint8Array(), () => {})
  a.destroy()
  b.destroy()
  return { frames, awareness }
}

// interleave: client A types "ab"; B, with a lower client ID, inserts X
// right after b; A then types c between b and X. c continues A's run
// (origin b) but has X as right origin, so merging b and c into one item
// would let X's lower client ID put it before c.
const interleave = sim => {
  const [a, b] = sim.docs
  a.clientID = 4000000000
  b.clientID = 1000
  const flush = () => sim.finish()
  a.getText('text').insert(0, 'ab')
  flush()
  b.getText('text').insert(2, 'X')
  flush()
  a.getText('text').insert(2, 'c')
  a.getText('text').insert(3, 'd')
  flush()
  b.getText('text').insert(4, 'Y')
  flush()
  a.getText('text').insert(4, 'e')
  flush()
}

const all = {
  text: () => scenario('text', { seed: 1, ops: 300, op: textOp }),
  map: () => scenario('map', { seed: 2, ops: 250, op: mapOp }),
  array: () => scenario('array', { seed: 3, ops: 250, op: arrayOp }),
  xml: () => scenario('xml', { seed: 4, ops: 250, op: xmlOp }),
  subdoc: () => scenario('subdoc', { seed: 5, ops: 60, op: (d, r) => (r.bool(0.3) ? subdocOp : mapOp)(d, r) }),
  interleave: () => scenario('interleave', { seed: 9, clients: 2, ops: 0, script: interleave }),
  gc: () => scenario('gc', { seed: 8, ops: 300, op: gcOp }),
  nogc: () => scenario('nogc', { seed: 6, ops: 250, op: mixedOp, gc: false }),
  random1: () => scenario('random1', { seed: 101, ops: 400, op: mixedOp }),
  random2: () => scenario('random2', { seed: 202, ops: 400, op: mixedOp }),
  random3: () => scenario('random3', { seed: 303, ops: 400, op: mixedOp }),
  random4: () => scenario('random4', { seed: 404, ops: 300, op: mixedOp, clients: 5 }),
  history: () => history('history', { seed: 7, edits: 10000 })
}

const names = process.argv.length > 2 ? process.argv.slice(2) : Object.keys(all)
const version = JSON.parse(readFileSync(new URL('./node_modules/yjs/package.json', import.meta.url))).version
const out = { yjsVersion: version, sortCases: sortCases(), ...messages(), scenarios: names.map(n => all[n]()) }
process.stdout.write(JSON.stringify(out))
