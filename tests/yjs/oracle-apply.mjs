// oracle-apply.mjs applies updates (as Go's rooms/yjs produced them) to
// fresh Y.Docs and reports what the documents hold.
//
// stdin:  {"jobs": [["<base64 update>", ...], ...]}
// stdout: [{"content": "<canonical JSON>", "pending": bool, "error": "..."}, ...]
import * as Y from 'yjs'
import { content, readStdin, unb64 } from './oracle-common.mjs'

const { jobs } = JSON.parse(await readStdin())
const results = jobs.map(updates => {
  const doc = new Y.Doc()
  try {
    for (const u of updates) Y.applyUpdate(doc, unb64(u))
    return {
      content: content(doc),
      pending: doc.store.pendingStructs !== null || doc.store.pendingDs !== null,
      size: Y.encodeStateAsUpdate(doc).length
    }
  } catch (e) {
    return { error: String(e && e.stack ? e.stack : e) }
  }
})
process.stdout.write(JSON.stringify(results))
