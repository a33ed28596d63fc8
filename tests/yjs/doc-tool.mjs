// doc-tool.mjs makes and reads whole documents for the HTTP document
// tests, with the real yjs.
//
// stdin:  {"read": ["<base64 update>", ...]}  applies the updates to a fresh
//         Y.Doc and answers {"text", "map"} (as peer.mjs's content does);
//         {"make": {"text": "...", "map": {...}}} answers {"update": "<base64>"},
//         a fresh document holding them (Y.encodeStateAsUpdate).
import * as Y from 'yjs'
import { readStdin } from './oracle-common.mjs'

const req = JSON.parse(await readStdin())
const b64 = u => Buffer.from(u).toString('base64')
const unb64 = s => new Uint8Array(Buffer.from(s, 'base64'))

const doc = new Y.Doc()
if (req.read) {
  for (const u of req.read) Y.applyUpdate(doc, unb64(u))
  const pending = doc.store.pendingStructs !== null || doc.store.pendingDs !== null
  process.stdout.write(JSON.stringify({ text: doc.getText('text').toString(), map: doc.getMap('map').toJSON(), pending }))
} else if (req.make) {
  if (req.make.text) doc.getText('text').insert(0, req.make.text)
  for (const [k, v] of Object.entries(req.make.map || {})) doc.getMap('map').set(k, v)
  process.stdout.write(JSON.stringify({ update: b64(Y.encodeStateAsUpdate(doc)) }))
} else {
  throw new Error('want read or make')
}
