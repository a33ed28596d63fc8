// Shared helpers of the oracle-*.mjs scripts that check rooms/yjs against
// the real yjs package.
import * as Y from 'yjs'

export const b64 = u => Buffer.from(u).toString('base64')
export const unb64 = s => new Uint8Array(Buffer.from(s, 'base64'))

// mulberry32: a small seeded PRNG, so every run generates the same data.
export const rng = seed => {
  let a = seed >>> 0
  const next = () => {
    a = (a + 0x6D2B79F5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
  return {
    next,
    int: n => Math.floor(next() * n), // 0 <= x < n
    bool: (p = 0.5) => next() < p,
    pick: arr => arr[Math.floor(next() * arr.length)],
    uint32: () => Math.floor(next() * 4294967296) >>> 0
  }
}

// canon maps a shared type (or a value inside one) to plain JSON with
// sorted keys, so that documents compare by content whatever the order
// in which their updates were integrated.
export const canon = v => {
  if (v instanceof Y.XmlText) return { $xmltext: v.toDelta().map(canonDelta), attrs: canon(v.getAttributes()) }
  if (v instanceof Y.Text) return { $text: v.toDelta().map(canonDelta) }
  if (v instanceof Y.XmlElement) return { $xml: v.nodeName, attrs: canon(v.getAttributes()), children: v.toArray().map(canon) }
  if (v instanceof Y.XmlHook) return { $hook: v.hookName, entries: canonEntries(v) }
  if (v instanceof Y.XmlFragment) return { $frag: v.toArray().map(canon) }
  if (v instanceof Y.Map) return { $map: canonEntries(v) }
  if (v instanceof Y.Array) return { $arr: v.toArray().map(canon) }
  if (v instanceof Y.Doc) return { $doc: v.guid, meta: canon(v.meta) }
  if (v instanceof Uint8Array) return { $bin: b64(v) }
  if (typeof v === 'bigint') return { $bigint: v.toString() }
  if (v === undefined) return { $undefined: true }
  if (typeof v === 'number' && !Number.isFinite(v)) return { $number: String(v) }
  if (Object.is(v, -0)) return { $number: '-0' }
  if (Array.isArray(v)) return v.map(canon)
  if (v !== null && typeof v === 'object') {
    const o = {}
    for (const k of Object.keys(v).sort()) o[k] = canon(v[k])
    return o
  }
  return v
}

const canonEntries = m => {
  const o = {}
  for (const k of Array.from(m.keys()).sort()) o[k] = canon(m.get(k))
  return o
}

const canonDelta = op => {
  const o = { insert: canon(op.insert) }
  if (op.attributes) o.attributes = canon(op.attributes)
  return o
}

// The root types every oracle document uses.
export const content = doc => JSON.stringify({
  text: canon(doc.getText('text')),
  map: canon(doc.getMap('map')),
  arr: canon(doc.getArray('arr')),
  xml: canon(doc.getXmlFragment('xml'))
})

export const readStdin = async () => {
  const chunks = []
  for await (const c of process.stdin) chunks.push(c)
  return Buffer.concat(chunks).toString('utf8')
}
