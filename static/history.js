// The version history panel of a room page (the document and the
// whiteboard): the History button opens a dialog that lists the room's
// versions by time (GET /api/rooms/{room}/versions, newest first, with the
// page's user token as Bearer), shows one read-only when picked (GET
// /api/rooms/{room}/versions/{id}) and restores it as a new edit everyone
// sees: how is the page's business (restore below). A view-only page
// previews but does not restore.

import { toast } from "./page.js";

const $ = (id) => document.getElementById(id);

/**
 * @typedef {{id: number, at: number, kind: "doc" | "state", seq?: number, bytes: number}} Version
 * @typedef {{
 *   roomName: string,
 *   kind: "doc" | "state",
 *   getToken: () => Promise<string>,
 *   viewOnly: boolean,
 *   preview: (v: Version, body: ArrayBuffer | {seq: number, data: any}) => HTMLElement,
 *   restore: (v: Version, body: ArrayBuffer | {seq: number, data: any}) => Promise<void> | void,
 *   focusAfter?: () => void,
 * }} HistoryOptions
 */

/** @param {HistoryOptions} o */
export function setupHistory(o) {
  const dialog = document.createElement("dialog");
  dialog.id = "history-dialog";
  dialog.className = "history-dialog";
  dialog.setAttribute("aria-labelledby", "history-title");
  dialog.innerHTML = `
    <div class="history-head">
      <h2 id="history-title">Version history</h2>
      <button id="history-close" type="button" class="button">Close</button>
    </div>
    <div class="history-body">
      <div class="history-list-wrap">
        <p id="history-note" class="hint" role="status"></p>
        <ul id="history-list" class="history-list" aria-label="Versions, newest first"></ul>
      </div>
      <section class="history-preview-wrap" aria-labelledby="history-preview-title">
        <h3 id="history-preview-title">Preview</h3>
        <div id="history-preview" class="history-preview" tabindex="0" aria-label="The picked version, read only">
          <p class="hint">Pick a version to see it here.</p>
        </div>
        <div class="actions">
          <button id="history-restore" type="button" class="button primary" disabled>Restore this version</button>
        </div>
      </section>
    </div>`;
  document.body.append(dialog);
  if (o.viewOnly) $("history-restore").hidden = true;

  let picked = null; // {version, body}
  const api = async (path) => {
    const token = await o.getToken();
    const res = await fetch(`/api/rooms/${encodeURIComponent(o.roomName)}/versions${path}`, {
      headers: { Authorization: `Bearer ${token}` },
      cache: "no-store",
    });
    if (!res.ok) {
      let msg = `HTTP ${res.status}`;
      try {
        msg = (await res.json()).message ?? msg;
      } catch {
        // the status says enough
      }
      throw new Error(msg);
    }
    return res;
  };

  async function load() {
    picked = null;
    $("history-restore").disabled = true;
    $("history-preview").replaceChildren(hint("Pick a version to see it here."));
    $("history-note").textContent = "Loading…";
    $("history-list").replaceChildren();
    try {
      const { versions } = await (await api("")).json();
      const mine = (versions ?? []).filter((v) => v.kind === o.kind).sort((a, b) => b.at - a.at);
      $("history-note").textContent = mine.length
        ? `${mine.length} version${mine.length === 1 ? "" : "s"}, newest first.`
        : "No versions yet: a version is kept while the room changes (every few minutes) and when the last person leaves.";
      $("history-list").replaceChildren(...mine.map(item));
    } catch (err) {
      $("history-note").textContent = `Could not list the versions: ${err.message}`;
    }
  }

  function item(v) {
    const li = document.createElement("li");
    const b = document.createElement("button");
    b.type = "button";
    b.className = "version";
    b.dataset.id = String(v.id);
    const when = document.createElement("span");
    when.className = "version-at";
    when.textContent = new Date(v.at).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "medium" });
    const size = document.createElement("span");
    size.className = "version-size";
    size.textContent = sizeText(v.bytes);
    b.append(when, size);
    b.addEventListener("click", () => pick(v, b));
    li.append(b);
    return li;
  }

  async function pick(v, button) {
    for (const el of $("history-list").querySelectorAll(".version")) el.setAttribute("aria-pressed", String(el === button));
    $("history-restore").disabled = true;
    $("history-preview").replaceChildren(hint("Loading…"));
    try {
      const res = await api(`/${v.id}`);
      const body = v.kind === "doc" ? await res.arrayBuffer() : await res.json();
      picked = { version: v, body };
      const view = o.preview(v, body);
      view.classList.add("history-view");
      $("history-preview").replaceChildren(view);
      $("history-restore").disabled = false;
    } catch (err) {
      picked = null;
      $("history-preview").replaceChildren(hint(`Could not load this version: ${err.message}`));
    }
  }

  $("history-restore").addEventListener("click", async () => {
    if (!picked || o.viewOnly) return;
    $("history-restore").disabled = true;
    try {
      await o.restore(picked.version, picked.body);
      dialog.close();
      o.focusAfter?.(); // after close, which gives the focus back to the History button
      toast(`Restored the version of ${new Date(picked.version.at).toLocaleTimeString()}`);
    } catch (err) {
      toast(`Could not restore: ${err.message}`);
      $("history-restore").disabled = false;
    }
  });
  // For debugging in the console and for the browser tests: the versions
  // as the API lists them, and a version's body.
  window.roomcastHistory = {
    list: async () => (await (await api("")).json()).versions ?? [],
    body: async (id) => {
      const res = await api(`/${id}`);
      return o.kind === "doc" ? new Uint8Array(await res.arrayBuffer()) : res.json();
    },
  };
  $("history-close").addEventListener("click", () => dialog.close());
  $("history").addEventListener("click", () => {
    dialog.showModal();
    load();
  });
}

function hint(text) {
  const p = document.createElement("p");
  p.className = "hint";
  p.textContent = text;
  return p;
}

function sizeText(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KiB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}
