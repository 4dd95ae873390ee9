// mmtools web page: search the served indexes by text or image, and tag a description and a photo.
// Plain JavaScript, no build step, nothing loaded from elsewhere. With a token, every request carries it in
// the Authorization header, pictures too: they are fetched and shown as blob: URLs, so the token never
// appears in a URL (which would leak into logs, history and Referer headers).
"use strict";

const TEXT = {
  vi: {
    sections: "Các mục", tabSearch: "Tìm ảnh", tabTag: "Gắn nhãn", language: "Ngôn ngữ",
    queryLabel: "Mô tả ảnh cần tìm", queryPlaceholder: "Tìm ảnh, ví dụ: người đàn ông chơi bóng chày",
    searchButton: "Tìm", byImage: "Hoặc tìm bằng ảnh: chọn hoặc thả ảnh vào đây", chooseImage: "Chọn ảnh…", options: "Tùy chọn",
    index: "Chỉ mục", k: "Số kết quả", minScore: "Độ tương đồng tối thiểu",
    minScoreKeyword: "Tìm theo từ khoá không dùng độ tương đồng",
    description: "Mô tả", descriptionPlaceholder: "Ví dụ: Phòng trọ rộng, có wifi, gần chợ",
    photo: "Ảnh (không bắt buộc)", tagger: "Bộ gắn nhãn",
    labels: "Nhãn để chấm điểm (phân cách bằng dấu phẩy)", tagButton: "Gắn nhãn",
    moreLike: "Ảnh tương tự", close: "Đóng",
    tokenTitle: "Máy chủ cần mã truy cập", tokenLabel: "Mã truy cập (token)", tokenButton: "Tiếp tục",
    tokenRejected: "Mã truy cập không đúng, hãy nhập lại.",
    zeroShot: "Nhãn tự nhập (zero-shot, mô hình {model})", trained: "Bộ gắn nhãn đã huấn luyện: {model}",
    searching: "Đang tìm…", tagging: "Đang gắn nhãn…",
    found: "{n} kết quả cho “{q}”", none: "Không có kết quả cho “{q}”",
    byImageQuery: "ảnh {name}", likeQuery: "ảnh giống {name}",
    score: "điểm", similarity: "tương đồng", bm25: "BM25", fusion: "điểm hợp nhất", at: "lúc", ocr: "Chữ trong ảnh", tags: "Nhãn",
    missing: "Không còn tệp ảnh", noQuery: "Hãy nhập nội dung cần tìm hoặc chọn một ảnh.",
    noIndex: "Máy chủ này không mở chỉ mục nào (chạy mmtools serve với --index).",
    needDescription: "Hãy nhập mô tả.", needInput: "Hãy nhập mô tả hoặc chọn ảnh.",
    needLabels: "Hãy nhập ít nhất một nhãn.",
    features: "{n} nhãn ({mode})", multimodal: "văn bản và ảnh", textOnly: "chỉ văn bản", imageOnly: "chỉ ảnh",
    network: "Không kết nối được với máy chủ.", serverError: "Máy chủ trả lời lỗi {status}.",
    preview: "Ảnh đã chọn", records: "{n} ảnh",
    video: "Video", videoOf: "Video {name}, từ {time}",
    mode: "Cách tìm", modeAuto: "Tự chọn", modeVector: "Theo nội dung ảnh", modeKeyword: "Theo từ khoá",
    modeHybrid: "Kết hợp", where: "Lọc theo trường (mỗi dòng một điều kiện, ví dụ tags=biển)",
    restored: "đã thêm dấu: “{q}”",
    didYouMean: "Có phải bạn muốn tìm:",
  },
  en: {
    sections: "Sections", tabSearch: "Search", tabTag: "Tag", language: "Language",
    queryLabel: "Describe the photo you are looking for", queryPlaceholder: "Search photos, e.g. a man playing baseball",
    searchButton: "Search", byImage: "Or search by image: choose or drop a photo here", chooseImage: "Choose a photo…", options: "Options",
    index: "Index", k: "Results", minScore: "Minimum similarity",
    minScoreKeyword: "Keyword search has no similarity to bound",
    description: "Description", descriptionPlaceholder: "e.g. Large room with wifi, near the market",
    photo: "Photo (optional)", tagger: "Tagger",
    labels: "Labels to score (comma-separated)", tagButton: "Tag",
    moreLike: "More like this", close: "Close",
    tokenTitle: "This server needs an access token", tokenLabel: "Access token", tokenButton: "Continue",
    tokenRejected: "The token was not accepted; enter it again.",
    zeroShot: "Labels typed in (zero-shot, model {model})", trained: "Trained tagger: {model}",
    searching: "Searching…", tagging: "Tagging…",
    found: "{n} results for “{q}”", none: "No results for “{q}”",
    byImageQuery: "image {name}", likeQuery: "photos like {name}",
    score: "score", similarity: "similarity", bm25: "BM25", fusion: "fusion", at: "at", ocr: "Text in the photo", tags: "Tags",
    missing: "The photo's file is missing", noQuery: "Type what to look for, or choose a photo.",
    noIndex: "This server has no index open (start mmtools serve with --index).",
    needDescription: "Type a description.", needInput: "Type a description or choose a photo.",
    needLabels: "Type at least one label.",
    features: "{n} labels ({mode})", multimodal: "text and image", textOnly: "text only", imageOnly: "image only",
    network: "Cannot reach the server.", serverError: "The server answered with error {status}.",
    preview: "Chosen photo", records: "{n} photos",
    video: "Video", videoOf: "Video {name}, from {time}",
    mode: "Search by", modeAuto: "Automatic", modeVector: "Picture content", modeKeyword: "Keywords",
    modeHybrid: "Both", where: "Filter on fields (one condition a line, e.g. tags=biển)",
    restored: "accents restored: “{q}”",
    didYouMean: "Did you mean:",
  },
};

const $ = (selector) => document.querySelector(selector);
const AUTH_NEEDED = document.querySelector('meta[name="mmtools-auth"]').content === "token";
const TOKEN_KEY = "mmtools-token";
const state = { lang: "vi", indexes: [], models: [], objectUrls: [], lastHits: [], viewing: null };

// ------------------------------------------------------------------------------------------- language

function t(key, values = {}) {
  const text = (TEXT[state.lang] && TEXT[state.lang][key]) || TEXT.vi[key] || key;
  return text.replace(/\{(\w+)\}/g, (_, name) => (name in values ? String(values[name]) : ""));
}

function applyLanguage(lang) {
  state.lang = TEXT[lang] ? lang : "vi";
  document.documentElement.lang = state.lang;
  $("#lang").value = state.lang;
  for (const el of document.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const el of document.querySelectorAll("[data-i18n-placeholder]")) el.placeholder = t(el.dataset.i18nPlaceholder);
  for (const el of document.querySelectorAll("[data-i18n-aria-label]")) el.setAttribute("aria-label", t(el.dataset.i18nAriaLabel));
  $("#tag-preview").alt = t("preview");
  fillTaggers();
}

// ---------------------------------------------------------------------------------- requests and token

class ApiError extends Error {
  constructor(status, message, hint) { super(message); this.status = status; this.hint = hint || ""; }
}

let tokenPrompt = null;

function askToken(rejected) {
  if (tokenPrompt) return tokenPrompt;
  const dialog = $("#token-dialog");
  $("#token-error").textContent = rejected ? t("tokenRejected") : "";
  $("#token").value = "";
  tokenPrompt = new Promise((resolve) => {
    const done = (event) => {
      event.preventDefault();
      const value = $("#token").value.trim();
      if (!value) return;
      sessionStorage.setItem(TOKEN_KEY, value);
      $("#token-form").removeEventListener("submit", done);
      dialog.close();
      tokenPrompt = null;
      resolve(value);
    };
    $("#token-form").addEventListener("submit", done);
    dialog.showModal();
    $("#token").focus();
  });
  return tokenPrompt;
}

async function authHeaders() {
  if (!AUTH_NEEDED) return {};
  const token = sessionStorage.getItem(TOKEN_KEY) || (await askToken(false));
  return { Authorization: `Bearer ${token}` };
}

// fetch with the token; asks for it again when the server refuses it. Errors become ApiError with the
// server's {"error", "hint"} where it sent one.
async function request(path, options = {}) {
  for (;;) {
    let response;
    try {
      response = await fetch(path, { ...options, headers: { ...(options.headers || {}), ...(await authHeaders()) } });
    } catch (err) {
      throw new ApiError(0, t("network"), String(err.message || err));
    }
    if (response.status === 401 && AUTH_NEEDED) {
      sessionStorage.removeItem(TOKEN_KEY);
      await askToken(true);
      continue;
    }
    if (!response.ok) {
      let body = {};
      try { body = await response.json(); } catch (_) { /* not JSON */ }
      throw new ApiError(response.status, body.error || t("serverError", { status: response.status }), body.hint);
    }
    return response;
  }
}

async function postJson(path, body) {
  const response = await request(path, { method: "POST", headers: { "Content-Type": "application/json" },
                                         body: JSON.stringify(body) });
  return response.json();
}

async function postForm(path, form) {
  return (await request(path, { method: "POST", body: form })).json();
}

function showError(err) {
  const box = $("#error");
  if (!err) { box.hidden = true; return; }
  box.querySelector(".error-message").textContent = err.message || String(err);
  box.querySelector(".error-hint").textContent = err.hint || "";
  box.hidden = false;
}

// --------------------------------------------------------------------------- what the server serves

function basename(path) {
  const name = String(path).split(/[\\/]/).pop() || String(path);
  return name.replace(/\.(faiss|milvus|db)$/i, "");
}

// /health lists indexes as {path: {records, model, ...}} (or a list of such objects), and models as
// {name: {...}} or a list of {name, kind}; model_loaded, where present, names the loaded ones.
function readHealth(health) {
  const indexes = [];
  const rawIndexes = health.indexes || {};
  const indexEntries = Array.isArray(rawIndexes)
    ? rawIndexes.map((entry) => [entry.path || entry.name, entry])
    : Object.entries(rawIndexes);
  for (const [path, info] of indexEntries) {
    if (!path) continue;
    indexes.push({ value: String(path), name: (info && info.name) || basename(path),
                   records: info && info.records, model: info && info.model });
  }
  const models = [];
  const seen = new Set();
  const addModel = (name, info) => {
    if (!name || seen.has(name)) return;
    seen.add(name);
    const kind = String((info && (info.kind || info.type || info.family)) || "").toLowerCase();
    models.push({ name, kind: kind.includes("tagger") ? "tagger" : "retrieval" });
  };
  const rawModels = health.models || {};
  if (Array.isArray(rawModels)) {
    for (const entry of rawModels) typeof entry === "string" ? addModel(entry, {}) : addModel(entry.name || entry.model, entry);
  } else {
    for (const [name, info] of Object.entries(rawModels)) addModel(name, info);
  }
  const loaded = health.model_loaded;
  if (Array.isArray(loaded)) for (const entry of loaded) typeof entry === "string" ? addModel(entry, {}) : addModel(entry.name, entry);
  else if (loaded && typeof loaded === "object") for (const [name, info] of Object.entries(loaded)) addModel(name, typeof info === "object" ? info : {});
  for (const index of indexes) addModel(index.model, { kind: "retrieval" });
  return { indexes, models };
}

async function loadServed() {
  const response = await request("/health");
  const served = readHealth(await response.json());
  state.indexes = served.indexes;
  state.models = served.models;
  const select = $("#index");
  select.replaceChildren(...state.indexes.map((index) => {
    const option = new Option(index.records != null ? `${index.name} (${t("records", { n: index.records })})` : index.name,
                              index.value);
    return option;
  }));
  $("#index-field").hidden = state.indexes.length < 2;
  fillTaggers();
}

function fillTaggers() {
  const select = $("#tagger");
  const previous = select.value;
  const options = [];
  for (const model of state.models.filter((m) => m.kind === "tagger")) {
    options.push(new Option(t("trained", { model: basename(model.name) }), `tagger:${model.name}`));
  }
  for (const model of state.models.filter((m) => m.kind !== "tagger")) {
    options.push(new Option(t("zeroShot", { model: basename(model.name) }), `zero-shot:${model.name}`));
  }
  select.replaceChildren(...options);
  if (options.some((o) => o.value === previous)) select.value = previous;
  fillTaggersVisibility();
}

// ------------------------------------------------------------------------------------------ pictures

function forgetPictures() {
  for (const url of state.objectUrls) URL.revokeObjectURL(url);
  state.objectUrls = [];
}

function pictureUrl(kind, hit) {
  const index = hit._index ? `?index=${encodeURIComponent(hit._index)}` : "";
  return `/${kind}/${encodeURIComponent(hit.id)}${index}`;
}

// Shows a served picture in ``img``: fetched with the token into a blob: URL; a placeholder if it is gone.
async function showPicture(img, kind, hit) {
  try {
    const response = await request(pictureUrl(kind, hit));
    const url = URL.createObjectURL(await response.blob());
    state.objectUrls.push(url);
    img.src = url;
    img.classList.remove("missing");
  } catch (err) {
    img.src = "/static/missing.svg";
    img.classList.add("missing");
    img.alt = `${t("missing")}: ${img.alt}`;
  }
}

// ------------------------------------------------------------------------------------------- results

function caption(record) {
  for (const key of ["caption", "text", "title", "description"]) {
    if (typeof record[key] === "string" && record[key].trim()) return record[key].trim();
  }
  if (Array.isArray(record.captions) && record.captions.length) return String(record.captions[0]);
  return "";
}

function tagsOf(record) {
  if (!Array.isArray(record.tags)) return [];
  return record.tags.map((tag) => (typeof tag === "string" ? tag : tag && (tag.label || tag.name)))
    .filter(Boolean).slice(0, 8);
}

function moment(seconds) {
  const total = Math.max(0, Math.floor(Number(seconds)));
  const h = Math.floor(total / 3600), m = Math.floor((total % 3600) / 60), s = total % 60;
  const pad = (n) => String(n).padStart(2, "0");
  return h ? `${h}:${pad(m)}:${pad(s)}` : `${m}:${pad(s)}`;
}

function element(tag, className, text) {
  const el = document.createElement(tag);
  if (className) el.className = className;
  if (text != null) el.textContent = text;
  return el;
}

// What the number is (mmtools.search.score_kind): a similarity, a BM25 relevance, or a fusion value.
function scoreKind(hit) {
  if (typeof hit.fusion === "number") return "fusion";
  const matched = Array.isArray(hit.matched) ? hit.matched : [];
  return matched.length && !matched.includes("vector") ? "bm25" : "similarity";
}

function scoreText(hit) {
  const kind = scoreKind(hit);
  return `${t(kind)} ${Number(kind === "fusion" ? hit.fusion : hit.score).toFixed(3)}`;
}

function describe(hit, container, full) {
  container.replaceChildren();
  const score = element("div", "score", scoreText(hit));
  if (typeof hit.time === "number") {
    score.append(" · ", element("span", "moment", `${t("at")} ${moment(hit.time)}`));
  }
  container.append(score);
  const text = caption(hit);
  if (text) container.append(element("p", "caption", text));
  const tags = tagsOf(hit);
  if (tags.length) {
    const list = element("ul", "chips");
    list.setAttribute("aria-label", t("tags"));
    for (const tag of tags) list.append(element("li", "", tag));
    container.append(list);
  }
  if (typeof hit.ocr_text === "string" && hit.ocr_text.trim()) {
    const ocr = hit.ocr_text.trim();
    const p = element("p", "ocr", full || ocr.length <= 120 ? ocr : `${ocr.slice(0, 117)}…`);
    p.title = `${t("ocr")}: ${ocr}`;
    container.append(p);
  }
}

function altText(hit) {
  return caption(hit) || basename(hit.path || hit.id);
}

function showHits(hits, shownQuery) {
  forgetPictures();
  state.lastHits = hits;
  const list = $("#results");
  list.replaceChildren();
  $("#search-status").textContent = hits.length ? t("found", { n: hits.length, q: shownQuery }) : t("none", { q: shownQuery });
  hits.forEach((hit, position) => {
    const item = element("li");
    const card = element("button", "card");
    card.type = "button";
    card.dataset.position = position;
    const img = element("img", "thumb");
    img.alt = altText(hit);
    img.width = 320;
    img.height = 240;
    const meta = element("div", "meta");
    describe(hit, meta, false);
    card.append(img, meta);
    if (isMoment(hit)) card.append(element("span", "play", `▶ ${moment(hit.time)}`));
    card.addEventListener("click", () => openViewer(hit));
    item.append(card);
    list.append(item);
    showPicture(img, "thumb", hit);
  });
}

function isMoment(hit) {
  return typeof hit.time === "number";
}

function stopVideo() {
  const video = $("#viewer-video");
  video.pause();
  if (video.hasAttribute("src")) { video.removeAttribute("src"); video.load(); }
}

// A video moment plays its source video from the moment: the server gives the URL (signed when there is a
// token: a <video> element cannot send the header) and answers its Range requests, so the player seeks.
async function playMoment(hit) {
  const video = $("#viewer-video");
  try {
    const link = await postJson("/video-url", { id: hit.id, index: hit._index || null });
    if (state.viewing !== hit) return;
    const start = Number(link.time);
    video.setAttribute("aria-label", t("videoOf", { name: basename(hit.path || hit.id), time: moment(start) }));
    video.addEventListener("loadedmetadata", () => {
      if (Math.abs(video.currentTime - start) > 0.25) video.currentTime = start;  // where #t= is not honoured
    }, { once: true });
    video.src = `${link.url}#t=${start.toFixed(3)}`;
    video.play().catch(() => { /* autoplay refused: the controls are there */ });
  } catch (err) {
    showError(err);
  }
}

function openViewer(hit) {
  state.viewing = hit;
  const img = $("#viewer-image");
  const video = $("#viewer-video");
  stopVideo();
  img.removeAttribute("src");
  img.alt = altText(hit);
  img.hidden = isMoment(hit);
  video.hidden = !isMoment(hit);
  $("#viewer-title").textContent = isMoment(hit) ? `${basename(hit.path || hit.id)} ${moment(hit.time)}`
                                                 : basename(hit.path || hit.id);
  describe(hit, $("#viewer-meta"), true);
  $("#viewer").showModal();
  $("#more-like").focus();
  if (isMoment(hit)) playMoment(hit);
  else showPicture(img, "image", hit);
}

// -------------------------------------------------------------------------------------------- search

function searchOptions() {
  const k = Math.min(1000, Math.max(1, parseInt($("#k").value, 10) || 20));
  const min = $("#min-score").value.trim();
  const index = $("#index").value || null;
  const where = $("#where").value.split("\n").map((line) => line.trim()).filter(Boolean);
  return { k, min_score: min === "" ? null : Number(min), index, mode: $("#mode").value || null, where };
}

// Keyword mode has no similarity: the minimum-similarity field is switched off there (it still holds its value,
// which searches by image and "more like this", always by similarity, keep using).
function syncMinScore() {
  const keyword = $("#mode").value === "keyword";
  $("#min-score").disabled = keyword;
  $("#min-score").title = keyword ? t("minScoreKeyword") : "";
}

function writeUrl(params) {
  const url = new URL(location.href);
  url.search = "";
  for (const [key, value] of Object.entries(params)) {
    for (const one of Array.isArray(value) ? value : [value]) if (one != null && one !== "") url.searchParams.append(key, one);
  }
  if (url.href !== location.href) history.pushState(null, "", url);
}

async function runSearch(kind, value, push = true) {
  showError(null);
  if (!state.indexes.length) { showError(new ApiError(0, t("noIndex"))); return; }
  const options = searchOptions();
  const common = { index: options.index, k: options.k, min: options.min_score, mode: options.mode, where: options.where };
  $("#search-status").textContent = t("searching");
  try {
    let answer, shown;
    if (kind === "text") {
      if (push) writeUrl({ tab: null, q: value, ...common });
      // keyword mode ranks by BM25, which has no similarity to bound: the server refuses min_score there
      const textOptions = options.mode === "keyword" ? { ...options, min_score: null } : options;
      answer = await postJson("/search", { query: value, ...textOptions });
      shown = value;
    } else if (kind === "like") {
      if (push) writeUrl({ like: value, ...common });
      answer = await postJson("/similar", { id: value, k: options.k, min_score: options.min_score,
                                            index: options.index, where: options.where });
      shown = t("likeQuery", { name: basename(value) });
    } else {
      const form = new FormData();
      form.append("image", value, value.name || "image");
      form.append("k", String(options.k));
      if (options.index) form.append("index", options.index);
      if (options.min_score != null) form.append("min_score", String(options.min_score));
      for (const condition of options.where) form.append("where", condition);
      answer = await postForm("/search", form);
      shown = t("byImageQuery", { name: value.name || "" });
    }
    const hits = (answer.hits || []).map((hit) => ({ ...hit, _index: options.index }));
    showHits(hits, shown);
    const restored = hits.length && hits[0].query_restored;
    if (restored && restored !== shown) $("#search-status").textContent += ` (${t("restored", { q: restored })})`;
    showAlternatives(hits, restored || shown);
  } catch (err) {
    $("#search-status").textContent = "";
    showAlternatives([], "");
    showError(err);
  }
}

// A query typed without accents that the server searched under several restorations (query_alternatives:
// strings, [text, weight] pairs or {text, weight} objects): each other one is offered as a search of its own.
function alternativesOf(hit) {
  const listed = (hit && Array.isArray(hit.query_alternatives)) ? hit.query_alternatives : [];
  return listed.map((one) => (typeof one === "string" ? one : Array.isArray(one) ? one[0] : one && (one.text || one.query)))
    .filter((text) => typeof text === "string" && text.trim());
}

function showAlternatives(hits, searched) {
  const box = $("#did-you-mean");
  const others = [...new Set(alternativesOf(hits[0]))].filter((text) => text !== searched);
  box.hidden = !others.length;
  if (!others.length) { box.replaceChildren(); return; }
  const choices = others.map((text) => {
    const button = element("button", "alternative", text);
    button.type = "button";
    button.addEventListener("click", () => { $("#q").value = text; runSearch("text", text); });
    return button;
  });
  box.replaceChildren(element("span", "", t("didYouMean")), ...choices);
}

function setUpSearch() {
  $("#search-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const file = $("#search-image").files[0];
    const query = $("#q").value.trim();
    if (query) runSearch("text", query);
    else if (file) runSearch("image", file);
    else showError(new ApiError(0, t("noQuery")));
  });
  $("#search-image").addEventListener("change", () => {
    const file = $("#search-image").files[0];
    if (file) { $("#q").value = ""; runSearch("image", file); }
  });
  const drop = $("#drop");
  const panel = $("#panel-search");
  panel.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("dragging"); });
  panel.addEventListener("dragleave", () => drop.classList.remove("dragging"));
  panel.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("dragging");
    const file = event.dataTransfer && event.dataTransfer.files[0];
    if (file) { $("#q").value = ""; runSearch("image", file); }
  });
  $("#more-like").addEventListener("click", () => {
    const hit = state.viewing;
    $("#viewer").close();
    if (hit) { $("#q").value = ""; runSearch("like", hit.id); }
  });
  $("#viewer-close").addEventListener("click", () => $("#viewer").close());
  $("#viewer").addEventListener("close", () => { stopVideo(); state.viewing = null; });
  $("#viewer").addEventListener("click", (event) => { if (event.target === $("#viewer")) $("#viewer").close(); });
}

// ----------------------------------------------------------------------------------------------- tag

function showFeatures(labels, scores, mode, threshold) {
  const list = $("#features");
  list.replaceChildren();
  labels.forEach((label, i) => {
    const score = Number(scores[i]);
    const item = element("li", "feature");
    if (threshold != null && score < threshold) item.classList.add("below");
    const bar = element("div", "bar");
    bar.setAttribute("role", "meter");
    bar.setAttribute("aria-valuemin", "0");
    bar.setAttribute("aria-valuemax", "1");
    bar.setAttribute("aria-valuenow", score.toFixed(3));
    bar.setAttribute("aria-label", label);
    const fill = element("span");
    fill.style.width = `${Math.round(Math.max(0, Math.min(1, score)) * 100)}%`;
    bar.append(fill);
    item.append(element("span", "label", label), bar, element("span", "value", score.toFixed(2)));
    list.append(item);
  });
  $("#tag-status").textContent = t("features", { n: labels.length, mode: t(mode) });
}

function setUpTag() {
  let previewUrl = null;
  $("#tag-image").addEventListener("change", () => {
    const file = $("#tag-image").files[0];
    const preview = $("#tag-preview");
    if (previewUrl) URL.revokeObjectURL(previewUrl);
    previewUrl = file ? URL.createObjectURL(file) : null;
    preview.hidden = !file;
    $("#tag-file-name").textContent = file ? file.name : t("chooseImage");
    if (file) { preview.src = previewUrl; preview.alt = `${t("preview")}: ${file.name}`; }
    else preview.removeAttribute("src");
  });
  $("#tagger").addEventListener("change", fillTaggersVisibility);
  $("#mode").addEventListener("change", syncMinScore);
  $("#tag-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    showError(null);
    const [kind, ...rest] = $("#tagger").value.split(":");
    const model = rest.join(":");
    const description = $("#description").value.trim();
    const file = $("#tag-image").files[0];
    const form = new FormData();
    if (model) form.append("model", model);
    try {
      $("#tag-status").textContent = t("tagging");
      if (kind === "tagger") {
        if (!description) throw new ApiError(0, t("needDescription"));
        form.append("description", description);
        if (file) form.append("image", file, file.name);
        const answer = await postForm("/api/extract-features", form);
        const mode = answer.mode === "multimodal" ? "multimodal" : "textOnly";
        showFeatures(answer.features || [], answer.confidence || [], mode, null);
      } else {
        if (!description && !file) throw new ApiError(0, t("needInput"));
        const labels = $("#labels").value.split(",").map((label) => label.trim()).filter(Boolean);
        if (!labels.length) throw new ApiError(0, t("needLabels"));
        if (description) form.append("text", description);
        if (file) form.append("image", file, file.name);
        form.append("labels", labels.join(","));
        const answer = await postForm("/tag", form);
        const tags = answer.tags || [];
        const mode = description && file ? "multimodal" : description ? "textOnly" : "imageOnly";
        showFeatures(tags.map((tag) => tag.label), tags.map((tag) => tag.score), mode, null);
      }
    } catch (err) {
      $("#tag-status").textContent = "";
      showError(err);
    }
  });
}

function fillTaggersVisibility() {
  $("#labels-field").hidden = !$("#tagger").value.startsWith("zero-shot:");
}

// ------------------------------------------------------------------------------------- tabs and URL

function showTab(tab) {
  const name = tab === "tag" ? "tag" : "search";
  $("#panel-search").hidden = name !== "search";
  $("#panel-tag").hidden = name !== "tag";
  for (const link of document.querySelectorAll(".tabs a")) {
    if (link.dataset.tab === name) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
}

// The URL holds the query, so a search can be linked and reloaded: ?q=...&index=...&k=...&min=... or ?like=ID.
function fromUrl() {
  const params = new URLSearchParams(location.search);
  showTab(params.get("tab"));
  if (params.has("k")) $("#k").value = params.get("k");
  $("#min-score").value = params.get("min") || "";
  $("#mode").value = ["vector", "keyword", "hybrid"].includes(params.get("mode")) ? params.get("mode") : "";
  $("#where").value = params.getAll("where").join("\n");
  syncMinScore();
  if (params.get("index") && state.indexes.some((index) => index.value === params.get("index"))) {
    $("#index").value = params.get("index");
  }
  const q = params.get("q");
  $("#q").value = q || "";
  if (q) runSearch("text", q, false);
  else if (params.get("like")) runSearch("like", params.get("like"), false);
}

function setUpTabs() {
  for (const link of document.querySelectorAll(".tabs a")) {
    link.addEventListener("click", (event) => {
      event.preventDefault();
      const url = new URL(location.href);
      if (link.dataset.tab === "tag") url.searchParams.set("tab", "tag");
      else url.searchParams.delete("tab");
      history.pushState(null, "", url);
      showTab(link.dataset.tab);
    });
  }
  window.addEventListener("popstate", fromUrl);
}

async function start() {
  const params = new URLSearchParams(location.search);
  applyLanguage(params.get("lang") || localStorage.getItem("mmtools-lang") || "vi");
  $("#lang").addEventListener("change", () => {
    localStorage.setItem("mmtools-lang", $("#lang").value);
    applyLanguage($("#lang").value);
  });
  $("#token-dialog").addEventListener("cancel", (event) => event.preventDefault());  // nothing works without it
  setUpTabs();
  setUpSearch();
  setUpTag();
  try {
    await loadServed();
  } catch (err) {
    showError(err);
  }
  fromUrl();
  document.body.dataset.ready = "true";  // for tests and scripts: the page has read what the server serves
}

start();
