// captcha-ocr demo page. Talks only to /api on its own origin (the Flask proxy picks the backend).
// Everything that comes from the server or from a file name is put on the page with textContent, never as HTML.
(() => {
  'use strict';

  const API = '/api';
  const KEYS = {
    lang: 'captcha_lang',
    arch: 'captcha_last_arch',
    allowed: 'captcha_allowed',
    history: 'captcha_history_v1',
  };
  const HISTORY_CAP = 200; // entries; each holds a ~3 KB JPEG thumbnail, so the whole list stays far below 5 MB
  const THUMB_W = 120; // px, width of the stored history thumbnails
  const LOW_CONFIDENCE = 0.9; // results below this are marked for a check before they become training labels
  const DB_NAME = 'captcha_ocr'; // IndexedDB: the original image bytes of the history entries, for the export
  const DB_STORE = 'originals';

  const I18N = {
    zh: {
      title: '验证码识别', subtitle: '拖入或粘贴验证码，得到文字、算术答案和置信度。', langHint: '切换界面语言',
      settings: '设置', model: '模型', refreshModels: '刷新模型列表', allowed: '字符范围', allowedAny: '不限',
      allowedDigits: '仅数字', allowedLetters: '仅字母', allowedUpper: '仅大写字母', allowedLower: '仅小写字母',
      allowedAlnum: '数字和字母', allowedArith: '算术式', upload: '上传',
      dropTitle: '拖入验证码图片，或点击选择文件',
      dropHint: '可多选 PNG、JPEG、GIF；也可以按 Ctrl+V 粘贴截图。键盘：Enter 或空格打开文件选择。',
      chooseFiles: '选择图片文件', pendingList: '待识别的图片', recognize: '开始识别', clearPending: '清空待识别',
      results: '识别结果', resultsEmpty: '还没有结果。', history: '历史记录', refreshHistory: '刷新记录',
      clearHistory: '清空记录', colImage: '图片', colFile: '文件名', colText: '识别结果', colAnswer: '答案',
      colConfidence: '置信度', colModel: '模型', colSize: '原图尺寸', colMs: '耗时', colTime: '时间', colCopy: '复制',
      footer: '图片只发送到本页面所在的服务器（/api），再由它转发给识别服务。',
      healthOk: '服务正常', healthNoModels: '没有可用模型', healthDown: '识别服务不可用',
      modelsLoading: '正在读取模型列表…', modelsLoaded: '共 {n} 个模型', modelsNone: '没有模型：请先训练（make train），把 checkpoints/<名称>/model.onnx 放好后重启服务。',
      modelsFailed: '读取模型列表失败：{msg}', defaultMark: '默认', inputSize: '输入 {w}×{h}×{c}',
      params: '参数 {n}', accuracy: '准确率 {v}（{on}）', onnxSize: 'ONNX {mb} MB',
      nothingSelected: '请先选择或粘贴图片。', noModel: '没有可用的模型。', working: '识别中…（{n} 张）',
      done: '完成：{n} 张，{bad} 张失败（模型：{arch}，共 {ms} ms）', failed: '出错：{msg}',
      networkError: '无法连接页面服务器：{msg}', badResponse: '服务器返回的不是 JSON（状态 {status}）',
      pasted: '已粘贴 {n} 张图片', added: '已添加 {n} 张图片', skipped: '跳过 {n} 个非图片文件',
      remove: '移除 {name}', answer: '答案', noAnswer: '—', copy: '复制', copied: '已复制', copyFailed: '复制失败',
      copyTitle: '复制 {v}', confidence: '置信度', perImage: '{ms} ms', frames: 'GIF · {n} 帧', gif: 'GIF',
      historyEmpty: '没有历史记录。', historyCount: '{n} 条记录（最多 {cap} 条，保存在本浏览器）',
      historyDropped: '浏览器存储空间已满：删除了最早的 {n} 条记录。', historyNotSaved: '浏览器存储空间已满，本次结果没有保存到历史记录。',
      historyCleared: '历史记录已清空。', knownModels: '可用模型：{list}', unknownError: '未知错误',
      reviewOnly: '只看待核对', exportDataset: '导出数据集',
      labelHint: '识别结果可以直接改：改好后按 Enter 保存。标黄的是低置信度结果，请先核对。“导出数据集”下载 zip（images/ 和 labels.txt），可直接用于 make finetune DATA=。',
      editLabel: '更正 {name} 的识别结果（Enter 保存，Esc 还原）', saved: '已保存：{name} → {label}',
      emptyLabel: '标签不能为空：{name} 没有保存。', lowBadge: '请核对', lowTitle: '置信度低于 {v}，请核对后按 Enter',
      corrected: '已更正', checked: '已核对', reviewCount: '{n} 条待核对。', exporting: '正在打包…',
      exported: '已导出 {n} 张图片到 {file}。', exportSkipped: '未导出：{low} 张低置信度未核对，{missing} 张没有原图，{empty} 张标签为空。',
      exportNothing: '没有可导出的结果：先识别一些图片，并核对标黄的结果。', noOriginals: '本浏览器不能保存原图（IndexedDB 不可用），无法导出数据集。',
    },
    en: {
      title: 'Captcha reader', subtitle: 'Drop or paste captchas to get the text, the arithmetic answer and a confidence.',
      langHint: 'Switch the page language', settings: 'Settings', model: 'Model', refreshModels: 'Refresh models',
      allowed: 'Characters', allowedAny: 'Any', allowedDigits: 'Digits only', allowedLetters: 'Letters only',
      allowedUpper: 'Upper case only', allowedLower: 'Lower case only', allowedAlnum: 'Digits and letters',
      allowedArith: 'Arithmetic', upload: 'Upload', dropTitle: 'Drop captcha images here, or click to choose files',
      dropHint: 'PNG, JPEG or GIF, several at once; Ctrl+V pastes a screenshot. Keyboard: Enter or Space opens the file picker.',
      chooseFiles: 'Choose image files', pendingList: 'Images waiting to be read', recognize: 'Read captchas',
      clearPending: 'Clear selection', results: 'Results', resultsEmpty: 'No results yet.', history: 'History',
      refreshHistory: 'Refresh', clearHistory: 'Clear history', colImage: 'Image', colFile: 'File', colText: 'Text',
      colAnswer: 'Answer', colConfidence: 'Confidence', colModel: 'Model', colSize: 'Original size', colMs: 'Time',
      colTime: 'When', colCopy: 'Copy', footer: 'Images go only to the server of this page (/api), which forwards them to the recognition service.',
      healthOk: 'Service ready', healthNoModels: 'No models available', healthDown: 'Recognition service down',
      modelsLoading: 'Loading the model list…', modelsLoaded: '{n} models', modelsNone: 'No models: train one (make train), put checkpoints/<name>/model.onnx in place and restart the service.',
      modelsFailed: 'Could not load the model list: {msg}', defaultMark: 'default', inputSize: 'input {w}×{h}×{c}',
      params: '{n} parameters', accuracy: 'accuracy {v} ({on})', onnxSize: 'ONNX {mb} MB',
      nothingSelected: 'Choose or paste some images first.', noModel: 'No model available.', working: 'Reading… ({n} images)',
      done: 'Done: {n} images, {bad} failed (model: {arch}, {ms} ms in all)', failed: 'Error: {msg}',
      networkError: 'Cannot reach the page server: {msg}', badResponse: 'The server answered something that is not JSON (status {status})',
      pasted: 'Pasted {n} images', added: 'Added {n} images', skipped: 'Skipped {n} files that are not images',
      remove: 'Remove {name}', answer: 'Answer', noAnswer: '—', copy: 'Copy', copied: 'Copied', copyFailed: 'Copy failed',
      copyTitle: 'Copy {v}', confidence: 'Confidence', perImage: '{ms} ms', frames: 'GIF · {n} frames', gif: 'GIF',
      historyEmpty: 'No history yet.', historyCount: '{n} entries (at most {cap}, kept in this browser)',
      historyDropped: 'Browser storage is full: the {n} oldest entries were removed.', historyNotSaved: 'Browser storage is full: these results were not saved to the history.',
      historyCleared: 'History cleared.', knownModels: 'known models: {list}', unknownError: 'unknown error',
      reviewOnly: 'Only those to check', exportDataset: 'Export dataset',
      labelHint: 'Correct a result in place: edit the text and press Enter. Results in yellow have a low confidence: check those first. "Export dataset" downloads a zip (images/ and labels.txt) that make finetune DATA= reads as it is.',
      editLabel: 'Correct the text of {name} (Enter saves, Esc undoes)', saved: 'Saved: {name} → {label}',
      emptyLabel: 'A label cannot be empty: {name} was not saved.', lowBadge: 'check', lowTitle: 'Confidence below {v}: check it, then press Enter',
      corrected: 'corrected', checked: 'checked', reviewCount: '{n} to check.', exporting: 'Packing…',
      exported: 'Exported {n} images to {file}.', exportSkipped: 'Left out: {low} low-confidence results not checked, {missing} without the original image, {empty} with an empty label.',
      exportNothing: 'Nothing to export: read some captchas first, and check the ones marked in yellow.', noOriginals: 'This browser cannot keep the original images (no IndexedDB), so there is nothing to export.',
    },
  };

  const $ = (id) => document.getElementById(id);
  const els = {
    lang: $('lang'), health: $('health'), model: $('model'), refreshModels: $('refresh-models'), allowed: $('allowed'),
    modelStatus: $('model-status'), drop: $('drop'), file: $('file'), pending: $('pending'), submit: $('submit'),
    clearPending: $('clear-pending'), status: $('status'), results: $('results'), resultsEmpty: $('results-empty'),
    historyBody: document.querySelector('#history tbody'), historyNote: $('history-note'),
    refreshHistory: $('refresh-history'), clearHistory: $('clear-history'), exportDataset: $('export-dataset'),
    reviewOnly: $('review-only'),
  };

  // ---- storage that never throws (private mode, disabled storage) ----
  const store = {
    get(key) { try { return localStorage.getItem(key); } catch { return null; } },
    set(key, value) { try { localStorage.setItem(key, value); return true; } catch { return false; } },
  };

  let lang = store.get(KEYS.lang) || ((navigator.language || '').toLowerCase().startsWith('zh') ? 'zh' : 'en');
  if (!I18N[lang]) lang = 'en';
  const t = (key, vars = {}) =>
    (I18N[lang][key] ?? I18N.en[key] ?? key).replace(/\{(\w+)\}/g, (_, k) => String(vars[k] ?? ''));

  // ---- small DOM helpers (text only) ----
  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }
  const setStatus = (node, text, kind = '') => { node.textContent = text; node.dataset.kind = kind; };
  const percent = (v) => (typeof v === 'number' ? `${(v * 100).toFixed(1)}%` : '—');
  const pad = (n) => String(n).padStart(2, '0');
  const stamp = (ts) => {
    const d = new Date(ts);
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  };

  function describeError(body) {
    if (!body || typeof body !== 'object') return t('unknownError');
    const detail = body.detail;
    let text = '';
    if (typeof detail === 'string') text = detail;
    else if (detail && Array.isArray(detail.known)) text = t('knownModels', { list: detail.known.join(', ') });
    else if (Array.isArray(detail)) text = detail.map((d) => [d.field, d.message].filter(Boolean).join(': ')).join('; ');
    else if (detail) text = JSON.stringify(detail);
    return [body.error || t('unknownError'), text].filter(Boolean).join(' — ');
  }

  async function api(path, options) {
    let response;
    try {
      response = await fetch(API + path, options);
    } catch (e) {
      return { ok: false, status: 0, body: null, message: t('networkError', { msg: e.message }) };
    }
    let body = null;
    try { body = await response.json(); } catch {
      return { ok: false, status: response.status, body: null, message: t('badResponse', { status: response.status }) };
    }
    return { ok: response.ok, status: response.status, body, message: response.ok ? '' : describeError(body) };
  }

  // ---- language ----
  function applyLang() {
    document.documentElement.lang = lang === 'zh' ? 'zh-CN' : 'en';
    document.title = `${t('title')} · captcha-ocr`;
    document.querySelectorAll('[data-i18n]').forEach((node) => { node.textContent = t(node.dataset.i18n); });
    document.querySelectorAll('[data-i18n-aria]').forEach((node) => node.setAttribute('aria-label', t(node.dataset.i18nAria)));
    els.drop.setAttribute('aria-label', t('dropTitle'));
    els.lang.textContent = lang === 'zh' ? 'English' : '中文';
    els.lang.setAttribute('aria-label', lang === 'zh' ? 'Switch to English' : '切换到中文');
    renderModels();
    renderPending();
    renderResults();
    renderHistory();
    checkHealth();
  }

  // ---- health and models ----
  let health = null;
  async function checkHealth() {
    const r = await api('/health');
    health = r;
    const [text, kind] = r.ok ? [t('healthOk'), 'ok']
      : r.body && r.body.status === 'no models' ? [t('healthNoModels'), 'warn']
      : [`${t('healthDown')}: ${r.message}`, 'error'];
    setStatus(els.health, text, kind);
  }

  let models = [];
  let modelsMessage = ['', ''];
  async function loadModels() {
    modelsMessage = [t('modelsLoading'), ''];
    renderModels();
    const r = await api('/models');
    if (!r.ok || !Array.isArray(r.body)) {
      models = [];
      modelsMessage = [t('modelsFailed', { msg: r.message || t('unknownError') }), 'error'];
    } else {
      models = r.body;
      modelsMessage = models.length ? [t('modelsLoaded', { n: models.length }), ''] : [t('modelsNone'), 'warn'];
    }
    renderModels();
  }

  function renderModels() {
    const chosen = els.model.value || store.get(KEYS.arch);
    els.model.replaceChildren();
    for (const m of models) {
      const label = `${m.name}${m.default ? ` (${t('defaultMark')})` : ''}`;
      const option = el('option', '', label);
      option.value = m.name;
      els.model.append(option);
    }
    const names = models.map((m) => m.name);
    const fallback = (models.find((m) => m.default) || models[0] || {}).name;
    if (names.length) els.model.value = names.includes(chosen) ? chosen : fallback;
    els.model.disabled = !names.length;
    const m = models.find((x) => x.name === els.model.value);
    const parts = [modelsMessage[0]];
    if (m) {
      parts.push(m.arch, t('inputSize', { w: m.img_w, h: m.img_h, c: m.channels }), t('onnxSize', { mb: m.onnx_mb }));
      if (m.parameters) parts.push(t('params', { n: (m.parameters / 1e6).toFixed(2) + 'M' }));
      if (m.accuracy && typeof m.accuracy.em === 'number') parts.push(t('accuracy', { v: percent(m.accuracy.em), on: m.accuracy.on }));
    }
    setStatus(els.modelStatus, parts.filter(Boolean).join(' · '), modelsMessage[1]);
  }

  // ---- pending files ----
  let pending = []; // {key, file, url, width, height, frames}
  const isImage = (f) => (f.type || '').startsWith('image/') || /\.(png|jpe?g|gif|bmp|webp)$/i.test(f.name);

  function gifFrameCount(buffer) {
    // Walks the GIF blocks and counts image descriptors; 0 when it is not a GIF.
    const b = new Uint8Array(buffer);
    if (b.length < 13 || b[0] !== 0x47 || b[1] !== 0x49 || b[2] !== 0x46) return 0;
    let p = 13;
    if (b[10] & 0x80) p += 3 * (1 << ((b[10] & 7) + 1));
    const skipSubBlocks = () => { while (p < b.length) { const n = b[p++]; if (n === 0) return; p += n; } };
    let frames = 0;
    while (p < b.length) {
      const tag = b[p++];
      if (tag === 0x2c) {
        frames += 1;
        const flags = b[p + 8];
        p += 9;
        if (flags & 0x80) p += 3 * (1 << ((flags & 7) + 1));
        p += 1; // LZW minimum code size
        skipSubBlocks();
      } else if (tag === 0x21) {
        p += 1; // extension label
        skipSubBlocks();
      } else break; // 0x3b trailer
    }
    return frames;
  }

  const naturalSize = (url) => new Promise((resolve) => {
    const img = new Image();
    img.onload = () => resolve([img.naturalWidth, img.naturalHeight]);
    img.onerror = () => resolve([0, 0]);
    img.src = url;
  });

  async function addFiles(fileList, how = 'added') {
    const files = Array.from(fileList || []);
    const images = files.filter(isImage);
    let added = 0;
    for (const file of images) {
      const key = `${file.name}::${file.size}::${file.lastModified}`;
      if (pending.some((p) => p.key === key)) continue;
      const url = URL.createObjectURL(file);
      const [width, height] = await naturalSize(url);
      const frames = /gif$/i.test(file.type) || /\.gif$/i.test(file.name) ? gifFrameCount(await file.arrayBuffer()) : 0;
      pending.push({ key, file, url, width, height, frames });
      added += 1;
    }
    const notes = [t(how, { n: added })];
    if (files.length > images.length) notes.push(t('skipped', { n: files.length - images.length }));
    setStatus(els.status, notes.join('；'));
    renderPending();
  }

  function thumbFigure(url, name, width, height, frames) {
    const figure = el('figure', 'thumb');
    const img = el('img');
    img.src = url;
    img.alt = name;
    img.title = width ? `${name}（${width}×${height}）` : name;
    figure.append(img);
    const caption = el('figcaption', '', width ? `${width}×${height}` : '');
    if (frames) caption.append(' ', el('span', 'badge', frames > 1 ? t('frames', { n: frames }) : t('gif')));
    figure.append(caption);
    return figure;
  }

  function renderPending() {
    els.pending.replaceChildren();
    for (const p of pending) {
      const li = el('li');
      li.append(thumbFigure(p.url, p.file.name, p.width, p.height, p.frames));
      const name = el('span', 'thumb-name', p.file.name);
      name.title = p.file.name;
      const remove = el('button', 'icon', '×');
      remove.type = 'button';
      remove.setAttribute('aria-label', t('remove', { name: p.file.name }));
      remove.addEventListener('click', () => {
        URL.revokeObjectURL(p.url);
        pending = pending.filter((x) => x !== p);
        renderPending();
      });
      li.append(name, remove);
      els.pending.append(li);
    }
    els.submit.disabled = false;
  }

  function clearPending(revoke = true) {
    if (revoke) pending.forEach((p) => URL.revokeObjectURL(p.url));
    pending = [];
    renderPending();
  }

  // ---- labels: the corrected text, else the model's; low confidence until the user checks it ----
  const labelOf = (x) => (x.label ?? x.text ?? '');
  const cleanLabel = (v) => String(v || '').replace(/\s+/g, '');
  const needsCheck = (x) => !x.error && !x.checked && typeof x.confidence === 'number' && x.confidence < LOW_CONFIDENCE;

  function saveLabel(id, value, name) {
    const label = cleanLabel(value);
    if (!label) { historyMessage = [t('emptyLabel', { name }), 'error']; renderHistory(); return false; }
    const list = readHistory();
    const h = list.find((x) => x.id === id);
    for (const target of [h, ...lastResults.filter((r) => r.entry.id === id).map((r) => r.entry)]) {
      if (!target) continue;
      target.label = label;
      target.checked = true;
    }
    if (h) writeHistory(list);
    historyMessage = [t('saved', { name, label }), 'ok'];
    renderResults();
    renderHistory();
    return true;
  }

  function labelInput(x, className) {
    // The text as an editable field: Enter saves it as the label (also when unchanged: that confirms it).
    const input = el('input', className);
    input.type = 'text';
    input.value = labelOf(x);
    input.spellcheck = false;
    input.autocomplete = 'off';
    input.setAttribute('aria-label', t('editLabel', { name: x.filename || '' }));
    const fit = () => { // CJK glyphs take two columns of the monospace font
      const cols = Array.from(input.value).reduce((n, c) => n + (/[\u2e80-\uffff]/.test(c) ? 2 : 1), 0);
      input.style.width = `calc(${Math.max(4, cols + 1)}ch + ${(cols * 0.04).toFixed(2)}em + 14px)`;
    };
    fit();
    input.addEventListener('input', fit);
    input.disabled = !x.id;
    input.addEventListener('keydown', (e) => {
      if (e.key === 'Enter') { e.preventDefault(); saveLabel(x.id, input.value, x.filename || ''); }
      else if (e.key === 'Escape') { input.value = labelOf(x); }
    });
    return input;
  }

  function labelMarks(x) {
    const marks = [];
    if (needsCheck(x)) {
      const badge = el('span', 'badge low-badge', t('lowBadge'));
      badge.title = t('lowTitle', { v: percent(LOW_CONFIDENCE) });
      marks.push(badge);
    } else if (x.label !== undefined && x.label !== x.text) marks.push(el('span', 'badge corrected-badge', t('corrected')));
    else if (x.checked) marks.push(el('span', 'badge checked-badge', t('checked')));
    return marks;
  }

  // ---- original images (IndexedDB; the history keeps only thumbnails) ----
  let dbPromise = null;
  function openDb() {
    if (!dbPromise) {
      dbPromise = new Promise((resolve) => {
        try {
          const req = indexedDB.open(DB_NAME, 1);
          req.onupgradeneeded = () => req.result.createObjectStore(DB_STORE);
          req.onsuccess = () => resolve(req.result);
          req.onerror = () => resolve(null);
        } catch { resolve(null); }
      });
    }
    return dbPromise;
  }

  async function dbRun(mode, work) {
    const db = await openDb();
    if (!db) return null;
    return new Promise((resolve) => {
      try {
        const tx = db.transaction(DB_STORE, mode);
        const result = work(tx.objectStore(DB_STORE));
        tx.oncomplete = () => resolve(result.value ?? true);
        tx.onerror = () => resolve(null);
        tx.onabort = () => resolve(null);
      } catch { resolve(null); }
    });
  }

  const putOriginals = (items) => dbRun('readwrite', (os) => { for (const it of items) os.put(it, it.id); return {}; });
  const clearOriginals = () => dbRun('readwrite', (os) => { os.clear(); return {}; });
  function getOriginals() {
    return dbRun('readonly', (os) => {
      const out = { value: new Map() };
      const req = os.openCursor();
      req.onsuccess = () => {
        const cursor = req.result;
        if (cursor) { out.value.set(cursor.key, cursor.value); cursor.continue(); }
      };
      return out;
    });
  }
  function pruneOriginals(keep) {
    const ids = new Set(keep.map((h) => h.id));
    return dbRun('readwrite', (os) => {
      const req = os.openKeyCursor();
      req.onsuccess = () => {
        const cursor = req.result;
        if (!cursor) return;
        if (!ids.has(cursor.key)) os.delete(cursor.key);
        cursor.continue();
      };
      return {};
    });
  }

  // ---- export: a zip (stored, no compression) with images/ and labels.txt, the layout make finetune reads ----
  const CRC_TABLE = (() => {
    const table = new Uint32Array(256);
    for (let n = 0; n < 256; n += 1) {
      let c = n;
      for (let k = 0; k < 8; k += 1) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      table[n] = c >>> 0;
    }
    return table;
  })();
  function crc32(data) {
    let c = 0xffffffff;
    for (let i = 0; i < data.length; i += 1) c = CRC_TABLE[(c ^ data[i]) & 0xff] ^ (c >>> 8);
    return (c ^ 0xffffffff) >>> 0;
  }

  function zipFiles(files, date = new Date()) {
    const encoder = new TextEncoder();
    const time = (date.getHours() << 11) | (date.getMinutes() << 5) | (date.getSeconds() >> 1);
    const day = ((date.getFullYear() - 1980) << 9) | ((date.getMonth() + 1) << 5) | date.getDate();
    const parts = [];
    const central = [];
    let offset = 0;
    for (const f of files) {
      const name = encoder.encode(f.name);
      const crc = crc32(f.data);
      const size = f.data.length;
      const local = new DataView(new ArrayBuffer(30));
      [[0, 0x04034b50, 4], [4, 20, 2], [6, 0x0800, 2], [10, time, 2], [12, day, 2], [14, crc, 4], [18, size, 4],
        [22, size, 4], [26, name.length, 2]].forEach(([at, v, n]) => (n === 4 ? local.setUint32(at, v, true) : local.setUint16(at, v, true)));
      parts.push(local, name, f.data);
      const entry = new DataView(new ArrayBuffer(46));
      [[0, 0x02014b50, 4], [4, 20, 2], [6, 20, 2], [8, 0x0800, 2], [12, time, 2], [14, day, 2], [16, crc, 4],
        [20, size, 4], [24, size, 4], [28, name.length, 2], [42, offset, 4]].forEach(([at, v, n]) => (n === 4 ? entry.setUint32(at, v, true) : entry.setUint16(at, v, true)));
      central.push(entry, name);
      offset += 30 + name.length + size;
    }
    const centralSize = central.reduce((sum, p) => sum + p.byteLength, 0);
    const end = new DataView(new ArrayBuffer(22));
    end.setUint32(0, 0x06054b50, true);
    end.setUint16(8, files.length, true);
    end.setUint16(10, files.length, true);
    end.setUint32(12, centralSize, true);
    end.setUint32(16, offset, true);
    return new Blob([...parts, ...central, end], { type: 'application/zip' });
  }

  const extensionOf = (name, type) => {
    const m = /\.(png|jpe?g|gif|bmp|webp)$/i.exec(name || '');
    if (m) return `.${m[1].toLowerCase()}`;
    return { 'image/jpeg': '.jpg', 'image/gif': '.gif', 'image/bmp': '.bmp', 'image/webp': '.webp' }[type] || '.png';
  };

  async function exportDataset() {
    setStatus(els.historyNote, t('exporting'), 'busy');
    const originals = await getOriginals();
    if (!originals) { historyMessage = [t('noOriginals'), 'error']; renderHistory(); return; }
    const counts = { low: 0, missing: 0, empty: 0 };
    const files = [];
    const lines = [];
    const history = readHistory().map((h, i) => [h, i]).sort((a, b) => (a[0].ts - b[0].ts) || (a[1] - b[1]));
    for (const [h] of history) { // oldest batch first, each in the order of its results
      if (h.error) continue;
      const label = cleanLabel(labelOf(h));
      const original = originals.get(h.id);
      if (!label) counts.empty += 1;
      else if (needsCheck(h)) counts.low += 1;
      else if (!original) counts.missing += 1;
      else {
        const name = `${String(files.length + 1).padStart(6, '0')}${extensionOf(original.name, original.type)}`;
        files.push({ name: `images/${name}`, data: new Uint8Array(original.data) });
        lines.push(`${name}\t${label}`);
      }
    }
    const skipped = counts.low + counts.missing + counts.empty ? t('exportSkipped', counts) : '';
    if (!files.length) { historyMessage = [[t('exportNothing'), skipped].filter(Boolean).join(' '), 'warn']; renderHistory(); return; }
    files.push({ name: 'labels.txt', data: new TextEncoder().encode(`${lines.join('\n')}\n`) });
    const d = new Date();
    const file = `captcha-dataset-${d.getFullYear()}${pad(d.getMonth() + 1)}${pad(d.getDate())}-${pad(d.getHours())}${pad(d.getMinutes())}${pad(d.getSeconds())}.zip`;
    const url = URL.createObjectURL(zipFiles(files, d));
    const link = el('a');
    link.href = url;
    link.download = file;
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10_000);
    historyMessage = [[t('exported', { n: lines.length, file }), skipped].filter(Boolean).join(' '), skipped ? 'warn' : 'ok'];
    renderHistory();
  }

  // ---- copy ----
  async function copyText(value, button) {
    let ok = false;
    try {
      await navigator.clipboard.writeText(value);
      ok = true;
    } catch {
      const area = el('textarea');
      area.value = value;
      area.setAttribute('readonly', '');
      area.className = 'visually-hidden';
      document.body.append(area);
      area.select();
      try { ok = document.execCommand('copy'); } catch { ok = false; }
      area.remove();
    }
    const before = t('copy');
    button.textContent = ok ? t('copied') : t('copyFailed');
    setTimeout(() => { button.textContent = before; }, 1200);
  }

  function copyButton(entry) {
    const value = entry.answer !== null && entry.answer !== undefined ? String(entry.answer) : labelOf(entry);
    const button = el('button', 'copy', t('copy'));
    button.type = 'button';
    button.disabled = !value;
    button.title = t('copyTitle', { v: value });
    button.setAttribute('aria-label', t('copyTitle', { v: value }));
    button.addEventListener('click', () => copyText(value, button));
    return button;
  }

  // ---- results of the last batch ----
  let lastResults = []; // {entry, url, frames}
  function renderResults() {
    els.results.replaceChildren();
    els.resultsEmpty.hidden = lastResults.length > 0;
    for (const { entry, url, frames } of lastResults) {
      const li = el('li', entry.error ? 'result error' : needsCheck(entry) ? 'result low' : 'result');
      li.append(thumbFigure(url, entry.filename, entry.width, entry.height, frames));
      const body = el('div', 'result-body');
      body.append(el('div', 'filename', entry.filename));
      if (entry.error) {
        body.append(el('div', 'error-text', describeError(entry)));
      } else {
        const line = el('div', 'line');
        line.append(labelInput(entry, 'text label-input'), ...labelMarks(entry));
        const answer = el('span', 'answer', entry.answer ?? t('noAnswer'));
        answer.title = t('answer');
        const answerBox = el('span', 'answer-box');
        answerBox.append(el('span', 'answer-label', `${t('answer')} =`), answer);
        line.append(answerBox);
        body.append(line);
        const meta = el('div', 'meta');
        const bar = el('span', 'bar');
        const fill = el('span', 'fill');
        fill.style.width = `${Math.round((entry.confidence || 0) * 100)}%`;
        bar.append(fill);
        const conf = el('span', 'confidence', percent(entry.confidence));
        conf.title = (entry.char_confidences || []).map((c) => percent(c)).join(' ');
        meta.append(el('span', 'meta-label', t('confidence')), bar, conf, el('span', 'ms', t('perImage', { ms: entry.ms })),
          el('span', 'model-name', entry.model || entry.arch || ''));
        body.append(meta);
      }
      li.append(body, copyButton(entry));
      els.results.append(li);
    }
  }

  // ---- history (localStorage, small thumbnails, quota-safe) ----
  function readHistory() {
    try {
      const list = JSON.parse(store.get(KEYS.history) || '[]');
      return Array.isArray(list) ? list : [];
    } catch { return []; }
  }

  const isQuotaError = (e) => e && (e.name === 'QuotaExceededError' || e.name === 'NS_ERROR_DOM_QUOTA_REACHED' || e.code === 22);

  function writeHistory(list) {
    // Drops the oldest entries until the list fits the browser's quota; returns how many were dropped (-1: none fit).
    let dropped = 0;
    const items = list.slice(0, HISTORY_CAP);
    for (;;) {
      try {
        localStorage.setItem(KEYS.history, JSON.stringify(items));
        return dropped;
      } catch (e) {
        if (!isQuotaError(e) || items.length === 0) return -1;
        items.pop();
        dropped += 1;
      }
    }
  }

  let historyMessage = ['', ''];
  function addToHistory(entries) {
    const list = [...entries, ...readHistory()];
    const dropped = writeHistory(list);
    pruneOriginals(readHistory());
    if (dropped < 0) historyMessage = [t('historyNotSaved'), 'error'];
    else if (dropped > 0 || list.length > HISTORY_CAP) historyMessage = [t('historyDropped', { n: Math.max(dropped, list.length - HISTORY_CAP) }), 'warn'];
    else historyMessage = ['', ''];
    renderHistory();
  }

  function renderHistory() {
    const list = readHistory();
    const toCheck = list.filter(needsCheck).length;
    els.historyBody.replaceChildren();
    for (const h of list) {
      if (els.reviewOnly.checked && !needsCheck(h)) continue;
      const tr = el('tr', h.error ? 'error' : needsCheck(h) ? 'low' : '');
      const tdImg = el('td');
      if (h.thumb && h.thumb.startsWith('data:image/')) {
        const img = el('img', 'history-thumb');
        img.src = h.thumb;
        img.alt = h.filename || '';
        tdImg.append(img);
        if (h.frames) tdImg.append(el('span', 'badge', t('gif')));
      }
      const tdText = el('td', h.error ? 'error-text' : 'text', h.error ? describeError(h) : '');
      if (!h.error) tdText.append(labelInput(h, 'label-input'), ...labelMarks(h));
      const tdCopy = el('td');
      tdCopy.append(copyButton(h));
      const tdName = el('td', 'filename', h.filename);
      tdName.title = h.filename || '';
      tr.append(tdImg, tdName, tdText, el('td', 'answer', h.error ? '' : h.answer ?? t('noAnswer')),
        el('td', 'confidence', h.error ? '' : percent(h.confidence)), el('td', 'model-name', h.arch || ''),
        el('td', '', h.width ? `${h.width}×${h.height}` : ''), el('td', 'ms', typeof h.ms === 'number' ? `${h.ms} ms` : ''),
        el('td', 'when', stamp(h.ts)), tdCopy);
      els.historyBody.append(tr);
    }
    const count = list.length ? t('historyCount', { n: list.length, cap: HISTORY_CAP }) : t('historyEmpty');
    const review = toCheck ? t('reviewCount', { n: toCheck }) : '';
    setStatus(els.historyNote, [historyMessage[0], count, review].filter(Boolean).join(' '), historyMessage[1]);
  }

  const makeThumb = (url, width, height) => new Promise((resolve) => {
    const img = new Image();
    img.onload = () => {
      try {
        const w = Math.min(THUMB_W, img.naturalWidth || THUMB_W);
        const h = Math.max(1, Math.round(w * (img.naturalHeight || height || 1) / (img.naturalWidth || width || 1)));
        const canvas = document.createElement('canvas');
        canvas.width = w;
        canvas.height = h;
        const ctx = canvas.getContext('2d');
        ctx.fillStyle = '#fff';
        ctx.fillRect(0, 0, w, h);
        ctx.drawImage(img, 0, 0, w, h);
        resolve(canvas.toDataURL('image/jpeg', 0.75));
      } catch { resolve(''); }
    };
    img.onerror = () => resolve('');
    img.src = url;
  });

  // ---- recognise ----
  async function recognise() {
    if (!pending.length) { setStatus(els.status, t('nothingSelected'), 'warn'); return; }
    if (!els.model.value) { setStatus(els.status, t('noModel'), 'error'); return; }
    const batch = pending;
    const arch = els.model.value;
    const form = new FormData();
    for (const p of batch) form.append('files', p.file, p.file.name);
    form.append('model', arch);
    if (els.allowed.value) form.append('allowed', els.allowed.value);
    els.submit.disabled = true;
    setStatus(els.status, t('working', { n: batch.length }), 'busy');
    const r = await api('/predict', { method: 'POST', body: form });
    els.submit.disabled = false;
    const results = r.body && Array.isArray(r.body.results) ? r.body.results : null;
    if (!results) { setStatus(els.status, t('failed', { msg: r.message }), 'error'); return; }

    store.set(KEYS.arch, arch);
    lastResults.forEach((x) => URL.revokeObjectURL(x.url));
    const now = Date.now();
    const newId = (i) => `${now.toString(36)}-${i}-${Math.random().toString(36).slice(2, 8)}`;
    lastResults = results.map((entry, i) => ({ entry: { ...entry, id: entry.error ? '' : newId(i) }, url: batch[i] ? batch[i].url : '', frames: batch[i] ? batch[i].frames : 0 }));
    const cards = lastResults;
    clearPending(false); // the object URLs now belong to the result cards
    renderResults();
    const bad = results.filter((x) => x.error).length;
    setStatus(els.status, r.ok ? t('done', { n: results.length, bad, arch: r.body.model || r.body.arch, ms: r.body.ms })
      : t('failed', { msg: r.message }), bad ? 'warn' : 'ok');

    const entries = [];
    const originals = [];
    for (let i = 0; i < results.length; i += 1) {
      const x = cards[i].entry;
      const p = batch[i];
      if (x.id && p) originals.push({ id: x.id, name: p.file.name, type: p.file.type, data: await p.file.arrayBuffer() });
      entries.push({
        id: x.id, ts: now, arch: x.model || x.arch || arch, filename: x.filename, text: x.text ?? null, answer: x.answer ?? null,
        confidence: x.confidence ?? null, ms: x.ms ?? null, width: x.width ?? (p ? p.width : 0),
        height: x.height ?? (p ? p.height : 0), error: x.error || null, detail: x.detail || null,
        frames: p ? p.frames : 0, thumb: p ? await makeThumb(p.url, p.width, p.height) : '',
      });
    }
    await putOriginals(originals);
    entries.forEach((e, i) => { // corrections typed while the thumbnails were being made
      const x = cards[i].entry;
      if (x.label !== undefined) Object.assign(e, { label: x.label, checked: true });
    });
    addToHistory(entries); // newest batch first, in the order of its results
  }

  // ---- wiring ----
  els.lang.addEventListener('click', () => { lang = lang === 'zh' ? 'en' : 'zh'; store.set(KEYS.lang, lang); applyLang(); });
  els.refreshModels.addEventListener('click', () => { loadModels(); checkHealth(); });
  els.model.addEventListener('change', () => { store.set(KEYS.arch, els.model.value); renderModels(); });
  els.allowed.value = store.get(KEYS.allowed) || '';
  els.allowed.addEventListener('change', () => store.set(KEYS.allowed, els.allowed.value));
  els.drop.addEventListener('click', () => els.file.click());
  els.drop.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); els.file.click(); }
  });
  for (const type of ['dragenter', 'dragover']) {
    els.drop.addEventListener(type, (e) => { e.preventDefault(); els.drop.classList.add('over'); });
  }
  for (const type of ['dragleave', 'drop']) {
    els.drop.addEventListener(type, (e) => { e.preventDefault(); els.drop.classList.remove('over'); });
  }
  els.drop.addEventListener('drop', (e) => addFiles(e.dataTransfer && e.dataTransfer.files));
  els.file.addEventListener('change', () => { addFiles(els.file.files); els.file.value = ''; });
  document.addEventListener('paste', (e) => {
    const files = Array.from((e.clipboardData && e.clipboardData.files) || []).filter(isImage);
    if (!files.length) return;
    e.preventDefault();
    const stampName = new Date().toISOString().replace(/[:.]/g, '-');
    const named = files.map((f, i) => new File([f], `paste-${stampName}-${i + 1}.${(f.type.split('/')[1] || 'png')}`, { type: f.type, lastModified: Date.now() }));
    addFiles(named, 'pasted');
  });
  els.submit.addEventListener('click', recognise);
  els.clearPending.addEventListener('click', () => { clearPending(); setStatus(els.status, ''); });
  els.exportDataset.addEventListener('click', exportDataset);
  els.reviewOnly.addEventListener('change', renderHistory);
  els.refreshHistory.addEventListener('click', () => { historyMessage = ['', '']; renderHistory(); });
  els.clearHistory.addEventListener('click', () => {
    try { localStorage.removeItem(KEYS.history); } catch { /* storage disabled: nothing to clear */ }
    clearOriginals();
    historyMessage = [t('historyCleared'), 'ok'];
    renderHistory();
  });

  applyLang();
  loadModels();
})();
