// The StyleRT page: a photo, a painting from the style bank, the painted photo beside it.
// It uses the service's public HTTP API only, with URLs relative to the page (so it works
// under any route prefix), and doubles as the API's worked example:
//   GET  v1/info                     the limits (max_body_mb, max_pixels, max_side), the engine
//   GET  v1/styles                   the style bank; GET v1/styles/{id}/image?side=N its thumbnails
//   POST v1/styles?name=NAME         a new painting (body: its bytes) -> {"id": ...}
//   POST v1/stylize?style=ID:W&style=ID2:W2&strength=0.8&preserve_color=true&format=jpeg
//                                    body: the photo's bytes -> the painted photo, at its size
// Errors come back as JSON {"error", "note"}; they are shown in words, never as raw JSON.
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const state = {
    info: null,       // GET v1/info
    styles: [],       // GET v1/styles
    photo: null,      // {blob, name, url, width, height} (width/height 0 when the browser cannot show it)
    styleId: null,    // the chosen painting
    xhr: null,        // the stylize request in flight
    resultUrl: null,
    retries: 0,       // automatic retries after 503 (overloaded) for the current settings
    timer: null,
    view: window.matchMedia("(max-width: 760px)").matches ? "compare" : "side",
  };
  const MAX_RETRIES = 3;

  // ------------------------------------------------------------------------------ HTTP
  class ApiError extends Error {
    constructor(status, error, note, retryAfter) {
      super(error || `HTTP ${status}`);
      Object.assign(this, { status, error, note, retryAfter });
    }
  }

  // One request; resolves with the XMLHttpRequest (any 2xx) or rejects with an ApiError.
  // XMLHttpRequest rather than fetch: it reports upload progress and can be aborted.
  function request(method, url, { body = null, type = "json", onUpload = null } = {}) {
    const xhr = new XMLHttpRequest();
    const done = new Promise((resolve, reject) => {
      xhr.open(method, url);
      xhr.responseType = type === "json" ? "text" : "blob";
      if (onUpload) {
        xhr.upload.onprogress = (e) => e.lengthComputable && onUpload(e.loaded / e.total);
        xhr.upload.onload = () => onUpload(1);
      }
      xhr.onload = async () => {
        if (xhr.status >= 200 && xhr.status < 300) return resolve(xhr);
        let text = xhr.response;
        if (text instanceof Blob) text = await text.text();
        let body = {};
        try { body = JSON.parse(text); } catch (_) { /* not JSON: a proxy's page, say */ }
        reject(new ApiError(xhr.status, body.error, body.note, Number(xhr.getResponseHeader("Retry-After")) || 0));
      };
      xhr.onerror = () => reject(new ApiError(0));
      xhr.onabort = () => reject(new ApiError(-1));
      xhr.send(body);
    });
    return { xhr, done };
  }
  const getJson = async (url) => JSON.parse((await request("GET", url).done).response);

  // ------------------------------------------------------------------------------ messages
  function say(what, detail = "", { kind = "error", retry = false } = {}) {
    const box = $("message");
    box.className = "message" + (kind === "warn" ? " warn" : "");
    box.replaceChildren();
    const p = document.createElement("p");
    p.className = "what";
    p.textContent = what;
    box.append(p);
    if (detail) {
      const d = document.createElement("p");
      d.textContent = detail;
      box.append(d);
    }
    if (retry) {
      const b = document.createElement("button");
      b.type = "button";
      b.textContent = "Try again";
      b.addEventListener("click", () => { state.retries = 0; paint(); });
      box.append(b);
    }
    box.hidden = false;
  }
  const clearMessage = () => { $("message").hidden = true; };

  const sentence = (s) => (s ? s.charAt(0).toUpperCase() + s.slice(1) : "");
  // The service's own words after ours: "image: is not an image ..." reads better without the part name.
  const serviceSays = (e) => [e.error && sentence(e.error.replace(/^(image|style_image): /, "")), e.note]
    .filter(Boolean).join(" ");

  // An ApiError in words. `subject`: what was sent ("the photo “a.jpg”").
  function explain(e, subject) {
    switch (e.status) {
      case 0: return ["The service cannot be reached.", "Check that `stylert serve` is still running, then try again."];
      case 413: return [`${sentence(subject)} is too large for the service.`, serviceSays(e)];
      case 415: return [`${sentence(subject)} is not an image the service can read.`,
        "Choose a photo file (JPEG, PNG, WebP…)."];
      case 408: return ["The upload was too slow and the service gave up.", "Try again, or with a smaller file."];
      case 503: return ["The service is busy (overloaded) right now.", "Try again in a moment."];
      case 504: return ["The service took too long (it may be overloaded).", "Try again in a moment, or with a smaller photo."];
      case 404: return ["That painting is no longer in the style bank.", "The list has been refreshed: pick another."];
      case 400: return [`The service could not use ${subject}.`, serviceSays(e)];
      default: return [`The service answered with an error (${e.status}).`, serviceSays(e) || "Try again."];
    }
  }

  const mb = (bytes) => (bytes < 1048576 ? `${Math.max(1, Math.round(bytes / 1024))} KB`
    : `${(bytes / 1048576).toFixed(bytes < 10485760 ? 1 : 0)} MB`);
  const secs = (s) => (s < 1 ? `${Math.round(s * 1000)} ms` : `${s.toFixed(s < 10 ? 2 : 1)} s`);
  const px = (w, h) => `${w} × ${h}`;

  // ------------------------------------------------------------------------------ the service
  async function connect() {
    try {
      state.info = await getJson("v1/info");
    } catch (e) {
      if (e.status === 503) {  // the engine is still loading: /v1/info answers once it is ready
        $("engine").textContent = "The model is loading: this page is ready as soon as it is…";
        return setTimeout(connect, 1000);
      }
      $("engine").textContent = "The service cannot be reached: is `stylert serve` running?";
      return setTimeout(connect, 3000);
    }
    const i = state.info, L = i.limits;
    $("engine").textContent = `Running ${i.backend || "?"} ${i.precision || ""} on ${i.device || "?"}.`;
    $("photo-limits").textContent = `A photo file (JPEG, PNG, WebP…) up to ${L.max_body_mb} MB. ` +
      `Photos larger than ${L.max_side} px are painted at ${L.max_side} px and scaled back to their size.`;
    await loadStyles();
  }

  async function loadStyles(select = null) {
    try {
      state.styles = (await getJson("v1/styles")).styles;
    } catch (e) {
      const [what, detail] = explain(e, "the request");
      return say(`The style bank could not be listed. ${what}`, detail);
    }
    if (select) state.styleId = select;
    // the first painting is chosen until another is: a photo alone then gives a result
    if (!state.styles.some((s) => s.id === state.styleId)) state.styleId = state.styles.length ? state.styles[0].id : null;
    renderStyles();
  }

  const styleName = (s) => s.name || (s.sources && s.sources[0]) || `painting ${s.id.slice(0, 6)}`;

  function renderStyles() {
    const box = $("styles");
    box.replaceChildren();
    $("styles-empty").hidden = state.styles.length > 0;
    for (const s of state.styles) {
      const label = document.createElement("label");
      label.className = "tile";
      label.title = styleName(s);
      const input = document.createElement("input");
      input.type = "radio";
      input.name = "style";
      input.value = s.id;
      input.checked = s.id === state.styleId;
      input.addEventListener("change", () => { state.styleId = s.id; renderStyle2(); changed(); });
      label.append(input);
      if (s.image) {
        const img = document.createElement("img");
        img.src = `v1/styles/${s.id}/image?side=192`;
        img.alt = "";
        img.loading = "lazy";
        label.append(img);
      } else {  // stored without its image (an older bank): a lettered square
        const n = document.createElement("span");
        n.className = "noimg";
        n.textContent = styleName(s).slice(0, 2);
        label.append(n);
      }
      const tick = document.createElement("span");
      tick.className = "tick";
      tick.setAttribute("aria-hidden", "true");
      tick.textContent = "✓";
      const name = document.createElement("span");
      name.className = "name";
      name.textContent = styleName(s);
      label.append(tick, name);
      box.append(label);
    }
    renderStyle2();
  }

  function renderStyle2() {
    const sel = $("style2"), keep = sel.value;
    sel.replaceChildren(new Option("None", ""));
    for (const s of state.styles) if (s.id !== state.styleId) sel.append(new Option(styleName(s), s.id));
    sel.value = [...sel.options].some((o) => o.value === keep) ? keep : "";
    $("mix").disabled = !sel.value;
    $("mix-field").hidden = !sel.value;
  }

  // ------------------------------------------------------------------------------ the photo
  // Whether a chosen file is refused before it is sent (not an image, over the body limit),
  // said in words; the service checks again.
  function refused(blob, name) {
    const L = state.info && state.info.limits;
    if (blob.type && !blob.type.startsWith("image/")) {
      say(`“${name}” is not an image (${blob.type}).`, "Choose a photo file (JPEG, PNG, WebP…).");
      return true;
    }
    if (L && blob.size > L.max_body_mb * 1048576) {
      say(`“${name}” is ${mb(blob.size)}: too large for the service (at most ${L.max_body_mb} MB).`,
        "Save it smaller (or as a JPEG) and choose it again.");
      return true;
    }
    return false;
  }

  function setPhoto(blob, name) {
    clearMessage();
    if (refused(blob, name)) return;
    if (state.photo) URL.revokeObjectURL(state.photo.url);
    const photo = { blob, name, url: URL.createObjectURL(blob), width: 0, height: 0 };
    state.photo = photo;
    clearResult();
    const thumb = $("photo-thumb");
    thumb.onload = () => {
      photo.width = thumb.naturalWidth;
      photo.height = thumb.naturalHeight;
      describePhoto();
    };
    thumb.onerror = () => {  // Pillow reads more formats (TIFF) than browsers: let the service decide
      thumb.hidden = true;
      photo.viewable = false;
      showPanes($("stage").dataset.result === "yes");
      $("photo-info").textContent = `${name}: this browser cannot show it; the service will try to read it.`;
    };
    thumb.src = photo.url;
    thumb.alt = `Your photo: ${name}`;
    thumb.hidden = false;
    $("photo-drop").classList.add("has-photo");
    $("photo-drop-verb").textContent = "Choose another photo";
    $("photo-info").textContent = name;
    for (const id of ["before", "cmp-before"]) $(id).src = photo.url;
    changed(0);
  }

  // The photo's size, and what the service does with a large one (service.py: decoded, shrunk
  // to max_side on its longer side, painted, and the answer scaled back to the upload's size).
  function describePhoto() {
    const p = state.photo, L = state.info && state.info.limits;
    let text = `${p.name}: ${px(p.width, p.height)} px, ${mb(p.blob.size)}.`;
    if (L && p.width * p.height > L.max_pixels) {  // the service would answer 413: say it now
      p.refused = [`“${p.name}” is ${px(p.width, p.height)} px (${(p.width * p.height / 1e6).toFixed(0)} megapixels): ` +
        `too large for the service (at most ${(L.max_pixels / 1e6).toFixed(0)} megapixels).`, "Downscale it and choose it again."];
      $("photo-info").textContent = text;
      return say(...p.refused);
    }
    const side = Math.max(p.width, p.height);
    if (L && side > L.max_side) {
      const s = L.max_side / side;
      text += ` Large photos are shrunk: this one is painted at ${px(Math.round(p.width * s), Math.round(p.height * s))} ` +
        `and scaled back up to ${px(p.width, p.height)}, so its strokes are sized as in a ${L.max_side}-px photo.`;
    }
    $("photo-info").textContent = text;
  }

  // ------------------------------------------------------------------------------ a new painting
  async function addStyle(file) {
    clearMessage();
    if (refused(file, file.name)) return;
    // the bank's names: up to 64 letters, digits, spaces and . , ( ) + - _ (bank.py)
    const typed = $("style-name").value.trim();
    const name = (typed || file.name.replace(/\.[^.]*$/, "")).replace(/[^\w .,()+-]+/g, " ").trim().slice(0, 64);
    const label = $("style-file-label"), caption = label.firstChild;
    caption.textContent = "Adding… ";
    label.setAttribute("aria-busy", "true");
    try {
      const r = await request("POST", `v1/styles?name=${encodeURIComponent(name)}`, { body: file }).done;
      const added = JSON.parse(r.response);
      $("style-name").value = "";
      await loadStyles(added.id);
      changed(0);
    } catch (e) {
      const [what, detail] = explain(e, `the painting “${file.name}”`);
      say(what, detail);
    } finally {
      caption.textContent = "Add a painting… ";
      label.removeAttribute("aria-busy");
    }
  }

  // ------------------------------------------------------------------------------ painting
  function settings() {
    const strength = Number($("strength").value) / 100;
    const second = $("style2").value, mix = Number($("mix").value) / 100;
    const q = new URLSearchParams();
    if (second) {
      q.append("style", `${state.styleId}:${(1 - mix).toFixed(2)}`);
      q.append("style", `${second}:${mix.toFixed(2)}`);
    } else {
      q.append("style", state.styleId);
    }
    q.set("strength", strength.toFixed(2));
    if ($("preserve").checked) q.set("preserve_color", "true");
    const png = state.photo.blob.type === "image/png";
    q.set("format", png ? "png" : "jpeg");
    if (!png) q.set("quality", "92");
    return { query: q.toString(), ext: png ? "png" : "jpg" };
  }

  // Something changed: paint again shortly (a slider dragged over several steps paints once).
  function changed(delay = 250) {
    state.retries = 0;
    clearTimeout(changed.t);
    changed.t = setTimeout(() => { if (state.photo && state.styleId) paint(); }, delay);
  }

  async function paint() {
    if (!state.photo) return say("Choose a photo first (1).", "", { kind: "warn" });
    if (state.photo.refused) return say(...state.photo.refused);
    if (!state.styleId) {
      return say(state.styles.length ? "Pick a painting first (2)." : "Add a painting first (2).",
        "Any picture works as a painting.", { kind: "warn" });
    }
    if (state.xhr) state.xhr.abort();  // only the latest settings matter
    clearMessage();
    const photo = state.photo, { query, ext } = settings();
    const t0 = performance.now();
    showProgress("Sending the photo…", t0);
    const { xhr, done } = request("POST", `v1/stylize?${query}`, {
      body: photo.blob, type: "blob",
      onUpload: (f) => { state.progressLabel = f < 1 ? `Sending the photo: ${Math.round(f * 100)} %` : "Painting…"; },
    });
    state.xhr = xhr;
    try {
      await done;
    } catch (e) {
      if (e.status === -1 || state.xhr !== xhr) return;  // replaced by a newer request
      state.xhr = null;
      hideProgress();
      if (e.status === 503 && state.retries < MAX_RETRIES) {  // overloaded: wait as told, then retry
        state.retries += 1;
        const s = Math.max(1, e.retryAfter || 1);
        say("The service is busy (overloaded) right now.", `Trying again in ${s} s (try ${state.retries} of ${MAX_RETRIES})…`,
          { kind: "warn" });
        changed.t = setTimeout(paint, s * 1000);
        return;
      }
      if (e.status === 404) loadStyles();
      // a 400 about the image names the photo; one about a style or a setting does not
      const about = e.status !== 400 || /^image\b/.test(e.error || "") ? `the photo “${photo.name}”` : "these settings";
      const [what, detail] = explain(e, about);
      say(what, detail, { retry: [0, 408, 503, 504].includes(e.status) });
      return;
    }
    if (state.xhr !== xhr) return;
    state.xhr = null;
    const seconds = (performance.now() - t0) / 1000;
    const computeMs = Number(xhr.getResponseHeader("X-Compute-Ms")), queueMs = Number(xhr.getResponseHeader("X-Queue-Ms"));
    showResult(xhr.response, photo, ext, seconds, computeMs, queueMs);
  }

  function showResult(blob, photo, ext, seconds, computeMs, queueMs) {
    if (state.resultUrl) URL.revokeObjectURL(state.resultUrl);
    state.resultUrl = URL.createObjectURL(blob);
    const after = $("after");
    after.onload = () => {
      hideProgress();
      const w = after.naturalWidth, h = after.naturalHeight;
      $("after-caption").textContent = `Painted, ${px(w, h)} px`;
      const style = state.styles.find((s) => s.id === state.styleId);
      $("timing").textContent = `Painted in ${secs(seconds)} (the model ${secs(computeMs / 1000)}, ` +
        `waiting ${secs(queueMs / 1000)}; the rest is sending and receiving the images).`;
      const dl = $("download");
      dl.href = state.resultUrl;
      const base = photo.name.replace(/\.[^.]*$/, "") || "photo";
      dl.download = `${base}-${(style ? styleName(style) : "painted").replace(/[^\w.-]+/g, "_")}.${ext}`;
      dl.textContent = `Download (${ext.toUpperCase()}, ${mb(blob.size)})`;
      dl.hidden = false;
      const first = $("stage").dataset.result !== "yes";
      showPanes(true);
      // the first result of a photo, out of sight (a phone: below the controls): bring it in view
      const top = $("result").getBoundingClientRect().top;
      if (first && (top > window.innerHeight * 0.6 || top < 0)) $("result").scrollIntoView({ behavior: "smooth", block: "start" });
    };
    after.onerror = () => { hideProgress(); say("The painted photo came back unreadable.", "Try again.", { retry: true }); };
    after.src = state.resultUrl;
    $("cmp-after").src = state.resultUrl;
  }

  function clearResult() {
    showPanes(false);
    $("timing").textContent = "";
    $("download").hidden = true;
  }

  function showPanes(result) {
    const has = Boolean(state.photo) && state.photo.viewable !== false;
    const side = state.view === "side" || (state.photo && !has);  // before/after needs the photo shown
    $("stage").className = "stage" + (side ? " side" : "");
    $("placeholder").hidden = has;
    $("placeholder-what").textContent = state.photo && !has
      ? `This browser cannot show “${state.photo.name}”.` : "Your painted photo will appear here.";
    $("placeholder-how").textContent = state.photo && !has
      ? "The service will still try to read it." : "Choose a photo (1) and a painting (2).";
    $("pane-before").hidden = !has || !side;
    $("pane-after").hidden = !result || !side;
    $("compare").hidden = !result || side;
    if (!result && !side && has) $("pane-before").hidden = false;  // before/after with no result yet: the photo alone
    $("stage").dataset.result = result ? "yes" : "no";
    $("view-side").setAttribute("aria-pressed", String(side));
    $("view-compare").setAttribute("aria-pressed", String(!side));
  }

  function showProgress(text, t0 = performance.now()) {
    state.progressLabel = text;
    $("progress").hidden = false;
    clearInterval(state.timer);
    const tick = () => {
      const s = (performance.now() - t0) / 1000;
      $("progress-text").textContent = s >= 0.5 ? `${state.progressLabel} ${s.toFixed(1)} s` : state.progressLabel;
    };
    tick();
    state.timer = setInterval(tick, 100);
  }
  function hideProgress() {
    clearInterval(state.timer);
    $("progress").hidden = true;
  }

  // ------------------------------------------------------------------------------ the camera
  async function openCamera() {
    clearMessage();
    try {
      const stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: "environment" }, audio: false });
      $("camera-video").srcObject = stream;
      await $("camera-video").play();
      $("camera").hidden = false;
      $("camera-snap").focus();
    } catch (e) {
      say("The camera is not available.", `${e.name === "NotAllowedError" ? "The browser was not allowed to use it." : e.message} ` +
        "Choose a photo file instead.", { kind: "warn" });
    }
  }
  function closeCamera() {
    const v = $("camera-video");
    if (v.srcObject) v.srcObject.getTracks().forEach((t) => t.stop());
    v.srcObject = null;
    $("camera").hidden = true;
  }
  function snap() {
    const v = $("camera-video"), c = document.createElement("canvas");
    c.width = v.videoWidth;
    c.height = v.videoHeight;
    c.getContext("2d").drawImage(v, 0, 0);
    c.toBlob((b) => { closeCamera(); if (b) setPhoto(b, "camera.jpg"); }, "image/jpeg", 0.92);
  }

  // ------------------------------------------------------------------------------ wiring
  function dropTarget(el, onFile) {
    el.addEventListener("dragover", (e) => { e.preventDefault(); el.classList.add("over"); });
    el.addEventListener("dragleave", () => el.classList.remove("over"));
    el.addEventListener("drop", (e) => {
      e.preventDefault();
      el.classList.remove("over");
      const f = e.dataTransfer.files[0];
      if (f) onFile(f);
    });
  }

  function setCompare(v) {
    $("cmp-after").style.clipPath = `inset(0 ${100 - v}% 0 0)`;
    $("cmp-divider").style.left = `${v}%`;
  }

  function init() {
    $("photo-file").addEventListener("change", (e) => { const f = e.target.files[0]; if (f) setPhoto(f, f.name); e.target.value = ""; });
    $("camera-capture").addEventListener("change", (e) => { const f = e.target.files[0]; if (f) setPhoto(f, f.name || "camera.jpg"); e.target.value = ""; });
    $("style-file").addEventListener("change", (e) => { const f = e.target.files[0]; if (f) addStyle(f); e.target.value = ""; });
    dropTarget($("photo-drop"), (f) => setPhoto(f, f.name));
    dropTarget($("style-file-label"), addStyle);
    // dropping a file anywhere else must not navigate away from the page
    window.addEventListener("dragover", (e) => e.preventDefault());
    window.addEventListener("drop", (e) => e.preventDefault());

    if (navigator.mediaDevices && navigator.mediaDevices.getUserMedia) {
      $("camera-open").hidden = false;  // a secure context (localhost, https): a live preview
    } else if (window.matchMedia("(pointer: coarse)").matches) {
      $("camera-capture-label").hidden = false;  // a phone over plain http: its camera app
    }
    $("camera-open").addEventListener("click", openCamera);
    $("camera-close").addEventListener("click", closeCamera);
    $("camera-snap").addEventListener("click", snap);

    const pct = (el, out) => { $(out).textContent = `${el.value} %`; };
    $("strength").addEventListener("input", (e) => pct(e.target, "strength-out"));
    $("mix").addEventListener("input", (e) => pct(e.target, "mix-out"));
    for (const id of ["strength", "mix", "preserve"]) $(id).addEventListener("change", () => changed());
    $("style2").addEventListener("change", () => { renderStyle2(); changed(); });
    $("go").addEventListener("click", () => { state.retries = 0; paint(); });

    $("cmp-range").addEventListener("input", (e) => setCompare(Number(e.target.value)));
    setCompare(50);
    const view = (v) => { state.view = v; showPanes($("stage").dataset.result === "yes"); };
    $("view-side").addEventListener("click", () => view("side"));
    $("view-compare").addEventListener("click", () => view("compare"));
    showPanes(false);
    connect();
  }

  init();
})();
