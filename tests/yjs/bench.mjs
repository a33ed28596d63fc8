// bench.mjs: Yjs benchmarks against running roomcast instances, with the
// stock y-websocket provider. Figures go to docs/BENCHMARKS.md.
//
//   node bench.mjs latejoin  --url ws://127.0.0.1:8080/yjs --secret S [--size 1000000]
//   node bench.mjs reconnect --url ws://127.0.0.1:8080/yjs --secret S [--size 1000000] [--offline 10]
//   node bench.mjs session   --url ws://A/yjs[,ws://B/yjs] --secret S [--writers 10] [--edits 10000] [--rate 500]
//   node bench.mjs relay     --url ws://A/yjs,ws://B/yjs --secret S [--rooms 10] [--per 10] [--rate 500] [--seconds 20] [--pids 1,2]
//
// Tokens are minted here (HS256 with --secret). Output is one JSON line.
import * as Y from 'yjs'
import { WebsocketProvider } from 'y-websocket'
import WebSocket from 'ws'
import crypto from 'node:crypto'
import fs from 'node:fs'

const args = Object.fromEntries(process.argv.slice(3).reduce((acc, a, i, all) => {
  if (a.startsWith('--')) acc.push([a.slice(2), all[i + 1]])
  return acc
}, []))
const mode = process.argv[2]
const secret = args.secret || 'bench-secret-0123456789abcdef0123456789'
const urls = (args.url || 'ws://127.0.0.1:8080/yjs').split(',')

function token (sub) {
  const b = (o) => Buffer.from(JSON.stringify(o)).toString('base64url')
  const body = b({ alg: 'HS256', typ: 'JWT' }) + '.' + b({ sub, name: sub, exp: Math.floor(Date.now() / 1000) + 3600 })
  return body + '.' + crypto.createHmac('sha256', secret).update(body).digest('base64url')
}

function provider (url, room, user, doc = new Y.Doc()) {
  const p = new WebsocketProvider(url, room, doc, { params: { token: token(user) }, WebSocketPolyfill: WebSocket, disableBc: true, maxBackoffTime: 500 })
  return { doc, p }
}

const once = (p, ev, pred = () => true) => new Promise((resolve) => {
  const f = (...a) => { if (pred(...a)) { p.off(ev, f); resolve(a) } }
  p.on(ev, f)
})
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
const room = (name) => name + '-' + crypto.randomBytes(4).toString('hex')

// A document of about size bytes of text, written as paragraphs in many
// updates (so it has many structs, like a real one).
async function fill (doc, size) {
  const text = doc.getText('text')
  const para = 'Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor. '.repeat(12) + '\n'
  for (let n = 0; n < size; n += para.length) {
    text.insert(Math.floor(text.length * 0.7), para)
  }
}

async function settle (a, b, ms = 20000) {
  const deadline = Date.now() + ms
  while (Date.now() < deadline) {
    if (a.getText('text').toString() === b.getText('text').toString()) return true
    await sleep(20)
  }
  return false
}

async function latejoin () {
  const size = Number(args.size || 1000000)
  const name = room('latejoin')
  const a = provider(urls[0], name, 'writer')
  await once(a.p, 'sync', (s) => s)
  await fill(a.doc, size)
  // let the server store it all: a second provider syncing and matching
  const check = provider(urls[urls.length - 1], name, 'checker')
  await once(check.p, 'sync', (s) => s)
  await settle(a.doc, check.doc)
  check.p.destroy()
  a.p.destroy()
  const docBytes = Y.encodeStateAsUpdate(a.doc).length
  const runs = []
  for (let i = 0; i < Number(args.runs || 5); i++) {
    const t0 = performance.now()
    const b = provider(urls[urls.length - 1], name, 'late' + i)
    await once(b.p, 'sync', (s) => s)
    const ms = performance.now() - t0
    const ok = b.doc.getText('text').length === a.doc.getText('text').length
    runs.push({ ms: Math.round(ms * 10) / 10, ok, received: b.p.ws?._socket?.bytesRead })
    b.p.destroy()
    await sleep(200)
  }
  return { mode, docBytes, textLength: a.doc.getText('text').length, runs }
}

async function reconnect () {
  const size = Number(args.size || 1000000)
  const offline = Number(args.offline || 10)
  const name = room('reconnect')
  const a = provider(urls[0], name, 'alice')
  await once(a.p, 'sync', (s) => s)
  await fill(a.doc, size)
  const b = provider(urls[urls.length - 1], name, 'bob')
  await once(b.p, 'sync', (s) => s)
  await settle(a.doc, b.doc)
  b.p.disconnect()
  // 10 s offline typing: a character every 100 ms at the end of a paragraph
  const t = b.doc.getText('text')
  const edit = Y.encodeStateVector(b.doc)
  for (let i = 0; i < offline * 10; i++) {
    t.insert(Math.floor(t.length / 2), 'x')
    await sleep(100)
  }
  const editBytes = Y.encodeStateAsUpdate(b.doc, edit).length
  const t0 = performance.now()
  b.p.connect()
  await once(b.p, 'sync', (s) => s)
  const syncMs = performance.now() - t0
  const ok = await settle(a.doc, b.doc)
  await sleep(300) // late acks
  const sock = b.p.ws?._socket
  const out = { mode, docBytes: Y.encodeStateAsUpdate(a.doc).length, editBytes, ok, syncMs: Math.round(syncMs * 10) / 10, convergedMs: Math.round(performance.now() - t0 - 300), sent: sock?.bytesWritten, received: sock?.bytesRead }
  a.p.destroy(); b.p.destroy()
  return out
}

function cpuTicks (pid) {
  try {
    const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ')
    return Number(f[11]) + Number(f[12]) // utime + stime, clock ticks (100/s)
  } catch { return 0 }
}

async function relay () {
  const rooms = Number(args.rooms || 10)
  const per = Number(args.per || 10)
  const rate = Number(args.rate || 500) // updates/s in total
  const seconds = Number(args.seconds || 20)
  const pids = (args.pids || '').split(',').filter(Boolean)
  const all = []
  for (let r = 0; r < rooms; r++) {
    const name = room('relay' + r)
    for (let i = 0; i < per; i++) {
      const x = provider(urls[(r + i) % urls.length], name, `u${r}-${i}`)
      x.room = r
      all.push(x)
    }
  }
  await Promise.all(all.map((x) => x.p.synced ? null : once(x.p, 'sync', (s) => s)))
  const lat = []
  let delivered = 0
  for (const x of all) {
    x.doc.getMap('m').observe((ev) => {
      if (ev.transaction.local) return
      const now = performance.now()
      ev.keysChanged.forEach((k) => { lat.push(now - x.doc.getMap('m').get(k)); delivered++ })
    })
  }
  const cpu0 = pids.map(cpuTicks)
  const t0 = performance.now()
  let sent = 0
  const writers = all.filter((_, i) => i % per === 0 || true)
  while (performance.now() - t0 < seconds * 1000) {
    const due = Math.floor((performance.now() - t0) / 1000 * rate)
    while (sent < due) {
      const x = writers[sent % writers.length]
      x.doc.getMap('m').set('k' + (sent % 50), performance.now())
      sent++
    }
    await sleep(5)
  }
  await sleep(2000)
  const elapsed = (performance.now() - t0) / 1000
  const cpu = pids.map((p, i) => (cpuTicks(p) - cpu0[i]) * 10) // ms
  lat.sort((a, b) => a - b)
  const q = (f) => Math.round(lat[Math.min(lat.length - 1, Math.floor(lat.length * f))] * 100) / 100
  const expected = sent * (per - 1)
  for (const x of all) x.p.destroy()
  const cpuMs = cpu.reduce((a, b) => a + b, 0)
  return {
    mode, rooms, per, instances: urls.length, sent, sentPerSec: Math.round(sent / seconds), delivered, expected,
    deliveredPerSec: Math.round(delivered / elapsed), p50: q(0.5), p99: q(0.99), max: q(1),
    serverCpuMs: cpu, cpuUsPerDelivered: delivered ? Math.round(cpuMs * 1000 / delivered * 10) / 10 : null
  }
}

// session: writers type into one shared text (spread over the urls), edits
// in all at rate per second: inserts of 1-3 characters at a random place,
// one in ten a deletion. Reports the document's size at the end, once every
// writer holds the same text; the caller reads what the store wrote.
async function session () {
  const writersN = Number(args.writers || 10)
  const edits = Number(args.edits || 10000)
  const rate = Number(args.rate || 500)
  const name = room('session')
  const writers = []
  for (let i = 0; i < writersN; i++) {
    const w = provider(urls[i % urls.length], name, 'writer' + i)
    writers.push(w)
    await once(w.p, 'sync', (s) => s)
  }
  const t0 = performance.now()
  let done = 0
  let seed = 1
  const rnd = (n) => { seed = (seed * 1103515245 + 12345) & 0x7fffffff; return seed % n }
  while (done < edits) {
    const due = Math.min(edits, Math.floor((performance.now() - t0) / 1000 * rate))
    while (done < due) {
      const text = writers[done % writersN].doc.getText('text')
      if (text.length > 10 && rnd(10) === 0) {
        text.delete(rnd(text.length - 3), 1 + rnd(3))
      } else {
        text.insert(rnd(text.length + 1), 'abcdefghij'.slice(0, 1 + rnd(3)))
      }
      done++
    }
    await sleep(5)
  }
  const want = () => writers[0].doc.getText('text').toString()
  const deadline = performance.now() + 30000
  while (!writers.every((w) => w.doc.getText('text').toString() === want())) {
    if (performance.now() > deadline) throw new Error('writers did not converge')
    await sleep(50)
  }
  const seconds = (performance.now() - t0) / 1000
  const docBytes = Y.encodeStateAsUpdate(writers[0].doc).length
  for (const w of writers) w.p.destroy()
  return { mode: 'session', room: name, writers: writersN, edits, seconds: Math.round(seconds * 10) / 10, textChars: want().length, docBytes }
}

const modes = { latejoin, reconnect, relay, session }
if (!modes[mode]) {
  console.error('usage: node bench.mjs latejoin|reconnect|relay|session [--url ws://host/yjs[,ws://host2/yjs]] [--secret S] …')
  process.exit(2)
}
modes[mode]().then((r) => { console.log(JSON.stringify(r)); process.exit(0) }, (e) => { console.error(e); process.exit(1) })
