// peer.mjs: real Yjs clients (Y.Doc + the stock y-websocket WebsocketProvider
// over the ws package) driven by a Go test through JSON lines.
//
// stdin, one command per line (argument names must not be n, cmd or id): {"n": <seq>, "cmd": "...", "id": "<doc name>", ...}
// stdout, one JSON object per line: {"re": <seq>, ...} answers a command,
// {"ev": "...", "id": ...} reports an event (synced, status, close,
// awareness).
import * as Y from 'yjs'
import { WebsocketProvider } from 'y-websocket'
import WebSocket from 'ws'
import readline from 'node:readline'
import { createHash } from 'node:crypto'

const peers = new Map()
const out = (o) => process.stdout.write(JSON.stringify(o) + '\n')

function content (doc) {
  return { text: doc.getText('text').toString(), map: doc.getMap('map').toJSON() }
}

function digest (doc, hash) {
  const text = doc.getText('text')
  const d = { length: text.length }
  if (hash) d.sha256 = createHash('sha256').update(text.toString()).digest('hex')
  return d
}

function awarenessStates (aw) {
  const states = {}
  aw.getStates().forEach((s, client) => { states[client] = s })
  return states
}

function connect (c) {
  const doc = new Y.Doc()
  if (c.clientID) doc.clientID = c.clientID
  const provider = new WebsocketProvider(c.url, c.room, doc, {
    params: { token: c.token },
    WebSocketPolyfill: WebSocket,
    disableBc: true,
    maxBackoffTime: c.maxBackoff || 500,
    connect: c.connect !== false
  })
  const p = { doc, provider, closes: [], updatesSent: 0 }
  peers.set(c.id, p)
  provider.on('sync', (synced) => { if (synced) out({ ev: 'synced', id: c.id }) })
  provider.on('status', ({ status }) => out({ ev: 'status', id: c.id, status }))
  provider.on('connection-close', (event) => {
    const code = event && event.code
    p.closes.push(code)
    out({ ev: 'close', id: c.id, code, reason: event && event.reason ? String(event.reason) : '' })
  })
  provider.awareness.on('change', () => {
    out({ ev: 'awareness', id: c.id, states: awarenessStates(provider.awareness) })
  })
  doc.on('update', () => { p.updatesSent++ })
  if (c.awareness) provider.awareness.setLocalState(c.awareness)
  return { clientID: doc.clientID }
}

// mulberry32: a small seeded generator, so runs are reproducible.
function rand (seed) {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6D2B79F5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

const commands = {
  connect,
  insert: (c, p) => { p.doc.getText('text').insert(c.pos ?? p.doc.getText('text').length, c.text); return {} },
  delete: (c, p) => { p.doc.getText('text').delete(c.pos, c.len); return {} },
  set: (c, p) => { p.doc.getMap('map').set(c.key, c.value); return {} },
  // count small edits of the shared text, each its own transaction (its own
  // update): mostly typing at random places, some deletions.
  edits: (c, p) => {
    const r = rand(c.seed)
    const text = p.doc.getText('text')
    for (let i = 0; i < c.count; i++) {
      const len = text.length
      if (len > 20 && r() < 0.3) {
        text.delete(Math.floor(r() * (len - 3)), 1 + Math.floor(r() * 3))
      } else {
        text.insert(Math.floor(r() * (len + 1)), String.fromCharCode(97 + Math.floor(r() * 26)))
      }
    }
    return {}
  },
  // one big insert of size bytes (a document of that size in one update)
  big: (c, p) => { p.doc.getText('text').insert(0, 'x'.repeat(c.size)); return {} },
  // paste: one insert of size bytes of seeded pseudo-random ASCII text at
  // pos (the end when absent), as a user pasting a file; answers the
  // text's digest after it.
  paste: (c, p) => {
    const r = rand(c.seed)
    const b = Buffer.alloc(c.size)
    for (let i = 0; i < c.size; i++) b[i] = 32 + Math.floor(r() * 95)
    const text = p.doc.getText('text')
    text.insert(c.pos ?? text.length, b.toString('latin1'))
    return digest(p.doc, true)
  },
  // digest: the text's length, and its SHA-256 when hash is set (a big
  // document is compared without sending it over stdout).
  digest: (c, p) => digest(p.doc, c.hash),
  content: (c, p) => ({ ...content(p.doc), size: Y.encodeStateAsUpdate(p.doc).length, synced: p.provider.synced }),
  awareness: (c, p) => { p.provider.awareness.setLocalState(c.state); return {} },
  states: (c, p) => ({ states: awarenessStates(p.provider.awareness) }),
  disconnect: (c, p) => { p.provider.disconnect(); return {} },
  reconnect: (c, p) => { p.provider.connect(); return {} },
  destroy: (c, p) => { p.provider.destroy(); p.doc.destroy(); peers.delete(c.id); return {} },
  info: (c, p) => ({ closes: p.closes, wsconnected: p.provider.wsconnected, synced: p.provider.synced }),
  // traffic: bytes the provider's current socket wrote and read so far
  // (WebSocket framing included).
  traffic: (c, p) => ({ sent: p.provider.ws?._socket?.bytesWritten ?? 0, received: p.provider.ws?._socket?.bytesRead ?? 0 })
}

const rl = readline.createInterface({ input: process.stdin })
rl.on('line', (line) => {
  let c
  try { c = JSON.parse(line) } catch (e) { out({ ev: 'error', error: 'bad command line: ' + e.message }); return }
  try {
    const f = commands[c.cmd]
    if (!f) throw new Error('unknown command ' + c.cmd)
    const p = peers.get(c.id)
    if (c.cmd !== 'connect' && !p) throw new Error('no peer ' + c.id)
    out({ re: c.n, ...f(c, p) })
  } catch (e) {
    out({ re: c.n, error: String(e && e.stack ? e.stack : e) })
  }
})
rl.on('close', () => {
  for (const p of peers.values()) p.provider.destroy()
  process.exit(0)
})
