// The whiteboard's model and canvas: strokes in board coordinates (0..1 on
// both axes of a 4:3 board), drawn to fit whatever size the canvas has.
// Knows nothing about the network; whiteboard.js feeds it.

/**
 * @typedef {[number, number]} Point normalised x, y in 0..1
 * @typedef {{id: string, color: string, width: number, points: Point[], done: boolean}} Stroke
 *   width is in thousandths of the board width; done is false while the
 *   author is still drawing it
 */

export const ASPECT = 4 / 3;
export const BACKGROUND = "#ffffff";
/** A stroke longer than this is split so each fits well inside one message. */
export const MAX_POINTS = 1500;

const round = (v) => Math.round(Math.min(1, Math.max(0, v)) * 10000) / 10000;

export class Board {
  /** Strokes in drawing order. @type {Map<string, Stroke>} */
  strokes = new Map();

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

  /** Adds a stroke, or replaces the one with its id (a finished stroke wins). */
  put(stroke) {
    const old = this.strokes.get(stroke.id);
    if (old?.done) return;
    this.strokes.set(stroke.id, stroke);
    if (old) this.redraw();
    else this.#draw(stroke, 0);
  }

  /** Appends points to a stroke still being drawn, creating it if needed. */
  extend(id, color, width, points) {
    const s = this.strokes.get(id);
    if (!s) return this.put({ id, color, width, points, done: false });
    if (s.done) return;
    const from = s.points.length - 1;
    s.points.push(...points);
    this.#draw(s, Math.max(0, from));
  }

  /** Removes finished strokes; strokes still being drawn stay. */
  clear() {
    for (const [id, s] of this.strokes) if (s.done) this.strokes.delete(id);
    this.redraw();
  }

  /** @param {string[]} ids */
  remove(ids) {
    let changed = false;
    for (const id of ids) changed = this.strokes.delete(id) || changed;
    if (changed) this.redraw();
  }

  /** Puts strokes that were drawn before everything on the board underneath it. */
  underlay(strokes) {
    const fresh = strokes.filter((s) => !this.strokes.has(s.id));
    if (!fresh.length) return;
    this.strokes = new Map([...fresh.map((s) => [s.id, { ...s, done: true }]), ...this.strokes]);
    this.redraw();
  }

  /** Finished strokes, for a late joiner. */
  finished() {
    return [...this.strokes.values()].filter((s) => s.done).map(({ id, color, width, points }) => ({ id, color, width, points }));
  }

  redraw() {
    const { ctx, canvas } = this;
    ctx.fillStyle = BACKGROUND;
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    for (const s of this.strokes.values()) this.#draw(s, 0);
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
