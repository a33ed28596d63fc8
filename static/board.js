// The whiteboard's model and canvas: strokes in board coordinates (0..1 on
// both axes of a 4:3 board), drawn to fit whatever size the canvas has.
// Knows nothing about the network; whiteboard.js feeds it.

/**
 * @typedef {[number, number]} Point normalised x, y in 0..1
 * @typedef {{id: string, color: string, width: number, points: Point[]}} StrokeData
 * @typedef {StrokeData & {done: boolean, order: number, tie: number}} Stroke
 *   width is in thousandths of the board width; done is false while the
 *   author is still drawing it. order places it in the stacking order: the
 *   seq of its stored message, a negative number for strokes that came in a
 *   state (they are older than any message after it), Infinity while it is
 *   not stored yet (drawn here, or still being drawn elsewhere); tie orders
 *   strokes of equal order by arrival.
 */

export const ASPECT = 4 / 3;
export const BACKGROUND = "#ffffff";
/** A stroke longer than this is split so each fits well inside one message. */
export const MAX_POINTS = 1500;

const round = (v) => Math.round(Math.min(1, Math.max(0, v)) * 10000) / 10000;
const byOrder = (a, b) => a.order - b.order || a.tie - b.tie;

export class Board {
  /** Strokes in painting order (the stacking order, bottom first). @type {Map<string, Stroke>} */
  strokes = new Map();
  /** Ids of strokes erased or cleared here: a late copy does not bring them back. */
  gone = new Set();

  #tie = 0;
  #batch = 0; // > 0 inside batch(): redraws wait for its end
  #dirty = false;

  /**
   * @param {HTMLCanvasElement} canvas
   * @param {HTMLElement} frame element whose size the canvas fits into
   */
  constructor(canvas, frame) {
    this.canvas = canvas;
    this.frame = frame;
    this.ctx = canvas.getContext("2d");
    new ResizeObserver(() => this.resize()).observe(frame);
    this.resize();
  }

  /** Fits the canvas into its frame at 4:3 and redraws at device resolution. */
  resize() {
    const box = this.frame.getBoundingClientRect();
    const width = Math.max(1, Math.min(box.width, box.height * ASPECT));
    const height = width / ASPECT;
    const dpr = window.devicePixelRatio || 1;
    this.canvas.style.width = `${width}px`;
    this.canvas.style.height = `${height}px`;
    this.canvas.width = Math.round(width * dpr);
    this.canvas.height = Math.round(height * dpr);
    this.redraw();
  }

  /**
   * Board coordinates of a pointer event.
   * @param {PointerEvent} ev
   * @returns {Point}
   */
  toPoint(ev) {
    const r = this.canvas.getBoundingClientRect();
    return [round((ev.clientX - r.left) / r.width), round((ev.clientY - r.top) / r.height)];
  }

  /** Runs fn with one redraw at the end instead of one per change. */
  batch(fn) {
    this.#batch++;
    try {
      fn();
    } finally {
      if (--this.#batch === 0 && this.#dirty) this.redraw();
    }
  }

  /** Starts a stroke drawn here (not stored yet: on top of everything stored). */
  begin(stroke) {
    if (this.strokes.has(stroke.id)) return;
    this.#insert({ ...stroke, done: false, order: Infinity, tie: ++this.#tie });
  }

  /** Marks a stroke drawn here as finished; it waits for its seq on top. */
  finish(id) {
    const s = this.strokes.get(id);
    if (!s || s.done) return;
    s.done = true;
    this.redraw(); // the canvas shows it as one path, as every other tab does
  }

  /** Appends points to a stroke still being drawn, creating it if needed. */
  extend(id, color, width, points) {
    if (this.gone.has(id)) return;
    const s = this.strokes.get(id);
    if (!s) return this.begin({ id, color, width, points: [...points] });
    if (s.done) return;
    const from = s.points.length - 1;
    s.points.push(...points);
    // Drawn over whatever is on top for now; its stored copy puts it in place.
    this.#draw(s, Math.max(0, from));
  }

  /**
   * Applies a finished stroke stored at seq (undefined from a server that
   * stores nothing: then it goes on top of what is stored). It replaces what
   * was drawn of it so far and takes its place in the stacking order.
   * @param {StrokeData} stroke
   * @param {number} [seq]
   */
  commit(stroke, seq) {
    if (this.gone.has(stroke.id)) return;
    const order = seq ?? this.#topOrder() + 1;
    const old = this.strokes.get(stroke.id);
    const s = { ...stroke, points: [...stroke.points], done: true, order, tie: old?.tie ?? ++this.#tie };
    if (old) this.strokes.delete(stroke.id);
    this.#insert(s, !old);
  }

  /** Removes strokes by id, for good. @param {string[]} ids */
  remove(ids) {
    let changed = false;
    for (const id of ids) {
      this.gone.add(id);
      changed = this.strokes.delete(id) || changed;
    }
    if (changed) this.redraw();
  }

  /**
   * A stored clear: removes every stored stroke. Strokes not stored yet stay:
   * they are stored after the clear (a stroke stored before it has its seq
   * by now), or are still being drawn.
   */
  clearStored() {
    this.#clear((s) => s.order !== Infinity);
  }

  /** The clear button: removes every finished stroke, stored or not. */
  clearFinished() {
    this.#clear((s) => s.done);
  }

  #clear(which) {
    for (const [id, s] of this.strokes) {
      if (!which(s)) continue;
      this.gone.add(id);
      this.strokes.delete(id);
    }
    this.redraw();
  }

  /**
   * Replaces every stored stroke with those of a state, in its order, below
   * anything not stored yet. A stroke drawn here that the state holds is
   * stored: it takes its place in the state.
   * @param {StrokeData[]} strokes
   */
  load(strokes) {
    const base = strokes.filter((s) => !this.gone.has(s.id));
    const ids = new Set(base.map((s) => s.id));
    const rest = [...this.strokes.values()].filter((s) => s.order === Infinity && !ids.has(s.id));
    this.strokes = new Map();
    base.forEach((s, i) => this.strokes.set(s.id, { ...s, points: [...s.points], done: true, order: i - base.length, tie: ++this.#tie }));
    for (const s of rest) this.strokes.set(s.id, s);
    this.redraw();
  }

  /** Whether any stored stroke is on the board. */
  hasStored() {
    for (const s of this.strokes.values()) if (s.order !== Infinity) return true;
    return false;
  }

  /** The stored strokes in painting order: the board's state. @returns {StrokeData[]} */
  stored() {
    const out = [];
    for (const s of this.strokes.values()) {
      if (s.order !== Infinity) out.push({ id: s.id, color: s.color, width: s.width, points: s.points });
    }
    return out;
  }

  redraw() {
    if (this.#batch) {
      this.#dirty = true;
      return;
    }
    this.#dirty = false;
    const { ctx, canvas } = this;
    ctx.fillStyle = BACKGROUND;
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    for (const s of this.strokes.values()) this.#draw(s, 0);
  }

  #topOrder() {
    let top = 0;
    for (const s of this.strokes.values()) if (s.order !== Infinity) top = Math.max(top, s.order);
    return top;
  }

  // Puts s at its place in the stacking order; a stroke that lands on top is
  // drawn on its own when drawNew, anything else redraws the board.
  #insert(s, drawNew = true) {
    let last;
    for (last of this.strokes.values());
    if (!last || byOrder(last, s) <= 0) {
      this.strokes.set(s.id, s);
      if (drawNew && !this.#batch) this.#draw(s, 0);
      else this.redraw();
      return;
    }
    this.strokes.set(s.id, s);
    this.strokes = new Map([...this.strokes.values()].sort(byOrder).map((x) => [x.id, x]));
    this.redraw();
  }

  // Draws the stroke from point index `from` on, so a growing stroke costs
  // only its new segment.
  #draw(s, from) {
    const { ctx, canvas } = this;
    const w = canvas.width;
    const h = canvas.height;
    const pts = s.points;
    if (!pts.length) return;
    ctx.strokeStyle = ctx.fillStyle = s.color;
    ctx.lineWidth = Math.max(1, (s.width / 1000) * w);
    ctx.lineCap = ctx.lineJoin = "round";
    if (pts.length === 1) {
      ctx.beginPath();
      ctx.arc(pts[0][0] * w, pts[0][1] * h, ctx.lineWidth / 2, 0, 2 * Math.PI);
      ctx.fill();
      return;
    }
    ctx.beginPath();
    ctx.moveTo(pts[from][0] * w, pts[from][1] * h);
    for (let i = from + 1; i < pts.length; i++) ctx.lineTo(pts[i][0] * w, pts[i][1] * h);
    ctx.stroke();
  }
}
