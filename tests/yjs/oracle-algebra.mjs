// oracle-algebra.mjs runs the yjs update algebra on updates given on stdin
// (hand-made edge cases from rooms/yjs's tests) and prints the results.
//
// stdin:  {"cases": [{"op": "merge", "updates": [b64...]},
//                    {"op": "diff", "update": b64, "sv": b64},
//                    {"op": "sv", "update": b64},
//                    {"op": "apply", "updates": [b64...]},
//                    {"op": "any", "values": [<JSON, with {"$bigint": "1"},
//                      {"$bin": b64}, {"$undefined": true}, {"$f64": n}>]}], ...}
// stdout: [{"result": b64} | {"content": "...", "pending": bool} | {"error": "..."}]
import * as Y from 'yjs'
import * as encoding from 'lib0/encoding'
import { b64, content, readStdin, unb64 } from './oracle-common.mjs'

const revive = v => {
  if (Array.isArray(v)) return v.map(revive)
  if (v !== null && typeof v === 'object') {
    if ('$bigint' in v) return BigInt(v.$bigint)
    if ('$bin' in v) return unb64(v.$bin)
    if ('$undefined' in v) return undefined
    const o = {}
    for (const k of Object.keys(v)) o[k] = revive(v[k])
    return o
  }
  return v
}

const { cases } = JSON.parse(await readStdin())
const results = cases.map(c => {
  try {
    switch (c.op) {
      case 'merge': return { result: b64(Y.mergeUpdates(c.updates.map(unb64))) }
      case 'diff': return { result: b64(Y.diffUpdate(unb64(c.update), unb64(c.sv))) }
      case 'sv': return { result: b64(Y.encodeStateVectorFromUpdate(unb64(c.update))) }
      case 'apply': {
        const doc = new Y.Doc()
        for (const u of c.updates) Y.applyUpdate(doc, unb64(u))
        return { content: content(doc), pending: doc.store.pendingStructs !== null || doc.store.pendingDs !== null }
      }
      case 'any': {
        // each value's lib0 writeAny encoding, concatenated
        const e = encoding.createEncoder()
        for (const v of c.values) encoding.writeAny(e, revive(v))
        return { result: b64(encoding.toUint8Array(e)) }
      }
    }
    return { error: 'unknown op ' + c.op }
  } catch (e) {
    return { error: String(e && e.stack ? e.stack : e) }
  }
})
process.stdout.write(JSON.stringify(results))
