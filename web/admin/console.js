// chimirror operator console. Plain ES2020, no dependencies.
//
// Contracts (see index.html for the element ids):
//  - All data comes from the JSON API under /api/v1 (same-origin cookie
//    auth); live updates come from the events WebSocket. State lives with
//    the server: after any (re)connect every list is re-read over REST.
//  - A 401 (or 429) from the API shows the login form and stops the rest.
//  - Untrusted strings (record fields) only ever reach the DOM through
//    textContent or attribute setters, never innerHTML.
'use strict';

(() => {
  // Everything is relative to where the page is served: a proxy or
  // base_path may put the console under a prefix.
  const BASE = new URL('.', location.href).pathname;
  const API = BASE + 'api/v1';
  const PAGE = 50;

  // All mutable state of the page.
  const state = {
    loggedIn: false,
    conn: { ws: null, up: false, attempt: 0, timer: 0, cb: 0 },
    active: new Map(),   // id -> {job, seq}; seq > 0 if it came from an event
    rows: new Map(),     // id -> {tr, cells} for the active table
    eventSeq: 0,         // counts /jobs/started events (see loadActive)
    activeGen: 0,        // generation of the running-list request
    ended: new Set(),    // ids seen in /jobs/ended, so a stale list cannot revive them
    history: { jobs: [], next: null, filters: null, gen: 0 },
    acct: { gen: 0, untilAuto: true },
    tenantsGen: 0,
    detail: { id: null, gen: 0, timer: 0, job: null },
    timers: { tick: 0, acct: 0, message: 0 },
    debounce: {},        // name -> timeout id
  };

  // ---------- small helpers ----------

  const $ = (id) => document.getElementById(id);

  // el(tag, {class, text, attrs...}, children) builds an element safely.
  function el(tag, props = {}, children = []) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(props)) {
      if (v === undefined || v === null) continue;
      if (k === 'class') e.className = v;
      else if (k === 'text') e.textContent = String(v);
      else e.setAttribute(k, String(v));
    }
    for (const c of children) e.append(c);
    return e;
  }

  const SVGNS = 'http://www.w3.org/2000/svg';
  function svg(tag, attrs = {}, text) {
    const e = document.createElementNS(SVGNS, tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
    if (text !== undefined) e.textContent = text;
    return e;
  }

  // debounce(name, ms, fn) runs fn once, ms after the last call for name.
  function debounce(name, ms, fn) {
    clearTimeout(state.debounce[name]);
    state.debounce[name] = setTimeout(fn, ms);
  }

  // ts parses an RFC 3339 time to ms since the epoch; NaN if absent/zero.
  function ts(s) {
    if (!s || s.startsWith('0001-')) return NaN;
    return Date.parse(s);
  }

  // fmtBytes: B / KiB / MiB / GiB with one decimal; trim drops a ".0".
  function fmtBytes(n, trim = false) {
    if (n === undefined || n === null || n < 0 || !Number.isFinite(n)) return '—';
    if (n < 1024) return `${n} B`;
    const units = ['KiB', 'MiB', 'GiB', 'TiB'];
    let v = n / 1024, i = 0;
    while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
    let s = v.toFixed(1);
    if (trim && s.endsWith('.0')) s = s.slice(0, -2);
    return `${s} ${units[i]}`;
  }

  const p2 = (x) => String(x).padStart(2, '0');

  // fmtDur: 1h02m03s / 4m05s / 6.2s, from milliseconds.
  function fmtDur(ms) {
    if (!Number.isFinite(ms)) return '—';
    if (ms < 0) ms = 0;
    if (ms < 60000) return `${(ms / 1000).toFixed(1)}s`;
    const t = Math.floor(ms / 1000);
    const h = Math.floor(t / 3600), m = Math.floor((t % 3600) / 60), s = t % 60;
    return h > 0 ? `${h}h${p2(m)}m${p2(s)}s` : `${m}m${p2(s)}s`;
  }

  // fmtTime: local "YYYY-MM-DD HH:MM:SS".
  function fmtTime(ms) {
    if (!Number.isFinite(ms)) return '—';
    const d = new Date(ms);
    return `${d.getFullYear()}-${p2(d.getMonth() + 1)}-${p2(d.getDate())} ${p2(d.getHours())}:${p2(d.getMinutes())}:${p2(d.getSeconds())}`;
  }
  const fmtClock = (ms) => fmtTime(ms).slice(11);

  // localInput formats ms for a datetime-local input ("YYYY-MM-DDTHH:MM").
  const localInput = (ms) => fmtTime(ms).slice(0, 16).replace(' ', 'T');

  // inputTime turns a datetime-local value into RFC 3339 (UTC), or ''.
  function inputTime(v) {
    if (!v) return '';
    const ms = new Date(v).getTime();
    return Number.isFinite(ms) ? new Date(ms).toISOString() : '';
  }

  const cpuSeconds = (u) => ((u?.cpu_user_ns || 0) + (u?.cpu_system_ns || 0)) / 1e9;
  const jobSeq = (id) => Number(String(id).replace(/^JOB/i, '')) || 0;
  const isOpen = (job) => job.state === 'running' || job.state === 'starting';

  // jobIO is [bytes in, bytes out] from live counters or the final traffic.
  function jobIO(job) {
    const c = job.live || job.traffic || {};
    return [c.stdin_bytes || 0, (c.stdout_bytes || 0) + (c.stderr_bytes || 0)];
  }
  const fmtIO = (job) => jobIO(job).map((n) => fmtBytes(n)).join(' / ');

  function elapsedMs(job) {
    const start = ts(job.started_at);
    const end = isOpen(job) ? Date.now() : ts(job.ended_at) || ts(job.last_seen);
    return end - start;
  }

  // jobLink is the clickable job id that opens the detail view.
  const jobLink = (id) => el('a', { class: 'mono job-link', href: `#job/${encodeURIComponent(id)}`, text: id });

  // ---------- messages and connection status ----------

  // showMessage shows text in #message; info clears itself, errors stay.
  function showMessage(text, kind = 'error') {
    const m = $('message');
    clearTimeout(state.timers.message);
    m.textContent = text;
    m.className = `message ${kind}`;
    m.hidden = !text;
    if (text && kind !== 'error') state.timers.message = setTimeout(() => { m.hidden = true; }, 6000);
  }

  // report shows an API error; 401 and network errors are handled elsewhere.
  function report(err) {
    if (err instanceof ApiError && (err.status === 0 || err.status === 401 || err.status === 429)) return;
    showMessage(err.message || String(err));
  }

  function renderStatus() {
    const s = $('status');
    const { up, attempt } = state.conn;
    if (up) {
      s.textContent = '● live';
      s.className = 'status ok';
    } else if (attempt === 0 && !state.conn.timer) {
      s.textContent = 'Connecting…';
      s.className = 'status';
    } else {
      s.textContent = 'Server unreachable — retrying…';
      s.className = 'status banner';
    }
    document.body.classList.toggle('offline', s.classList.contains('banner')); // dims stale data
  }

  // ---------- REST ----------

  class ApiError extends Error {
    constructor(status, message) { super(message); this.status = status; }
  }

  // api fetches path and returns its parsed JSON. It throws ApiError:
  // status 0 for network failures (which also start a reconnect), the HTTP
  // status with the server's {"error"} text otherwise. 401/429 show login.
  async function api(path, method = 'GET') {
    const init = { method, credentials: 'same-origin', cache: 'no-store', headers: { Accept: 'application/json' } };
    if (method === 'POST') {
      init.headers['Content-Type'] = 'application/json';
      init.body = '{}';
    }
    let res, text;
    try {
      res = await fetch(path, init);
      text = await res.text();
    } catch (e) {
      disconnected();
      throw new ApiError(0, 'Server unreachable');
    }
    const body = parseJSON(text);
    if (res.ok) return body;
    const msg = (body && typeof body.error === 'string') ? body.error : `${res.status} ${res.statusText}`.trim();
    if (res.status === 401 || res.status === 429) showLogin(res.status === 429 ? msg : '');
    throw new ApiError(res.status, msg);
  }

  function parseJSON(text) {
    try { return text ? JSON.parse(text) : null; } catch (e) { return null; }
  }

  const query = (params) => {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) if (v !== '' && v !== undefined && v !== null) q.set(k, v);
    return q.toString();
  };

  // ---------- login ----------

  function showLogin(error) {
    stopConsole();
    clearData();
    $('console').hidden = true;
    $('nav').hidden = true;
    $('logout').hidden = true;
    $('status').textContent = '';
    $('status').className = 'status';
    document.body.classList.remove('offline');
    $('login-view').hidden = false;
    $('login-error').textContent = error || '';
    $('token').focus();
  }

  async function submitLogin(ev) {
    ev.preventDefault();
    const btn = $('login');
    btn.disabled = true;
    $('login-error').textContent = '';
    try {
      const res = await fetch(BASE + 'login', {
        method: 'POST', credentials: 'same-origin',
        headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ token: $('token').value }).toString(),
      });
      if (res.status === 204) {
        $('token').value = '';
        startConsole();
        return;
      }
      const body = parseJSON(await res.text());
      $('login-error').textContent = body?.error || `Login failed (${res.status})`;
    } catch (e) {
      $('login-error').textContent = 'Server unreachable; try again.';
    } finally {
      btn.disabled = false;
    }
  }

  async function logout() {
    let res;
    try {
      res = await fetch(BASE + 'logout', { method: 'POST', credentials: 'same-origin' });
    } catch (e) {
      showMessage('Server unreachable; not logged out.');
      return;
    }
    if (res.status === 204) showLogin('');
    else showMessage(`Log out failed (${res.status})`);
  }

  // ---------- console lifecycle and the events socket ----------

  // startConsole starts connecting; the console shows once the API has
  // answered (see connect), the login form if it answers 401.
  function startConsole() {
    stopConsole();
    state.loggedIn = true;
    $('login-view').hidden = true;
    Object.assign(state.conn, { up: false, attempt: 0, timer: 0 });
    renderStatus();
    state.timers.tick = setInterval(tick, 1000);
    state.timers.acct = setInterval(() => {
      if (state.conn.up) { loadAcct().catch(report); loadTenants().catch(report); }
    }, 30000);
    route();
    connect();
  }

  function showConsole() {
    $('console').hidden = false;
    $('nav').hidden = false;
    $('logout').hidden = false;
  }

  // clearData forgets every job shown (on logout), so nothing stale remains.
  function clearData() {
    state.active.clear();
    state.ended.clear();
    state.activeGen++; // answers still in flight are void
    state.acct.gen++;
    renderActive();
    Object.assign(state.history, { jobs: [], next: null, filters: null });
    state.history.gen++;
    renderHistory();
    closeDetail();
  }

  // stopConsole closes the socket and stops every timer (on logout/401).
  function stopConsole() {
    state.loggedIn = false;
    closeSocket();
    clearTimeout(state.conn.timer);
    state.conn.timer = 0;
    state.conn.up = false;
    clearInterval(state.timers.tick);
    clearInterval(state.timers.acct);
    clearTimeout(state.detail.timer);
    for (const t of Object.values(state.debounce)) clearTimeout(t);
  }

  function closeSocket() {
    const ws = state.conn.ws;
    state.conn.ws = null;
    if (!ws) return;
    ws.onopen = ws.onclose = ws.onerror = ws.onmessage = null;
    try { ws.close(); } catch (e) { /* already closed */ }
  }

  // disconnected shows the banner and schedules one reconnect with
  // backoff 1s, 2s, 4s… up to 10s. Safe to call repeatedly.
  function disconnected() {
    if (!state.loggedIn) return;
    closeSocket();
    state.conn.up = false;
    if (!state.conn.timer) {
      const delay = Math.min(10000, 1000 * 2 ** state.conn.attempt);
      state.conn.attempt++;
      state.conn.timer = setTimeout(connect, delay);
    }
    renderStatus();
  }

  // connect first checks the login over REST (a WebSocket cannot see a
  // 401) by loading the tenants, then opens the socket and subscribes; see
  // onEvent for the rest.
  async function connect() {
    state.conn.timer = 0;
    if (!state.loggedIn) return;
    try {
      await loadTenants();
    } catch (e) {
      if (e.status === 401 || e.status === 429) return; // login shown
      showConsole();
      if (e.status === 0) return; // a retry is scheduled
      report(e);
    }
    showConsole();
    const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
    let ws;
    try {
      ws = new WebSocket(`${proto}//${location.host}${API}/events`, 'chimirror.v1');
    } catch (e) {
      disconnected();
      return;
    }
    state.conn.ws = ws;
    ws.onopen = () => ws.send(JSON.stringify({ event: '/subscribe', data: '/jobs', callback: ++state.conn.cb }));
    ws.onmessage = (m) => onEvent(parseJSON(m.data));
    ws.onclose = ws.onerror = () => { if (state.conn.ws === ws) disconnected(); };
  }

  function onEvent(msg) {
    if (!msg || typeof msg.event !== 'string') return;
    switch (msg.event) {
      case '/callback': return onSubscribed(msg.data || {});
      case '/jobs/started': return onStarted(msg.data);
      case '/jobs/usage': return onUsage(msg.data);
      case '/jobs/ended': return onEnded(msg.data);
      default: // unknown events are ignored (forward compatible)
    }
  }

  // onSubscribed: the socket is live; re-read everything over REST.
  function onSubscribed(cb) {
    if (!cb.ok) {
      showMessage(`Subscribe failed: ${cb.error || 'unknown error'}`);
      return;
    }
    state.conn.up = true;
    state.conn.attempt = 0;
    renderStatus();
    refreshAll();
  }

  // refreshAll re-reads the lists; connect has just read the tenants.
  function refreshAll() {
    const jobs = [loadActive(), loadHistory(true), loadAcct()];
    if (state.detail.id) jobs.push(loadDetail());
    return Promise.all(jobs.map((p) => p.catch(report)));
  }

  function onStarted(job) {
    if (!job || !job.id || state.ended.has(job.id)) return;
    const cur = state.active.get(job.id);
    if (cur && !job.live) job.live = cur.job.live;
    state.active.set(job.id, { job, seq: ++state.eventSeq });
    renderActive();
    debounce('tenants', 1000, () => loadTenants().catch(report));
  }

  function onUsage(list) {
    if (!Array.isArray(list)) return;
    let unknown = false;
    for (const u of list) {
      const a = state.active.get(u.id);
      if (a) a.job.live = u.live;
      else if (!state.ended.has(u.id)) unknown = true;
    }
    for (const [id, a] of state.rows) updateRow(a, state.active.get(id)?.job);
    // A job we have not heard of: its start event was missed; re-read.
    if (unknown) debounce('active', 2000, () => loadActive().catch(report));
  }

  function onEnded(job) {
    if (!job || !job.id) return;
    state.ended.add(job.id);
    if (state.ended.size > 2000) state.ended.delete(state.ended.values().next().value);
    state.active.delete(job.id);
    renderActive();
    if (matchesHistory(job)) {
      state.history.jobs.unshift(job);
      renderHistory();
    }
    if (state.detail.id === job.id) loadDetail().catch(report);
    debounce('tenants', 1000, () => loadTenants().catch(report));
    debounce('acct', 1000, () => loadAcct().catch(report)); // its usage is final now
  }

  // tick runs every second: elapsed times of running jobs.
  function tick() {
    for (const [id, r] of state.rows) {
      const a = state.active.get(id);
      if (a) setText(r.cells.elapsed, fmtDur(elapsedMs(a.job)));
    }
  }

  // ---------- active jobs ----------

  // listAll follows "next" cursors (running jobs fit in a few pages).
  async function listAll(params) {
    const out = [];
    let cursor = '';
    for (let page = 0; page < 20; page++) {
      const r = await api(`${API}/jobs?${query({ ...params, limit: 1000, cursor })}`);
      out.push(...(r?.jobs || []));
      if (!r?.next) break;
      cursor = r.next;
    }
    return out;
  }

  // loadActive replaces the running list, keeping jobs that started (by
  // event) after the request went out and dropping those that ended.
  async function loadActive() {
    const gen = ++state.activeGen;
    const seq = state.eventSeq;
    const jobs = await listAll({ state: 'running' });
    if (gen !== state.activeGen) return;
    const next = new Map();
    for (const job of jobs) if (!state.ended.has(job.id)) next.set(job.id, { job, seq: 0 });
    for (const [id, a] of state.active) if (a.seq > seq && !next.has(id)) next.set(id, a);
    state.active = next;
    renderActive();
  }

  // renderActive reconciles the table with state.active: rows are kept
  // (so clicks land) and only added, removed or reordered when needed.
  function renderActive() {
    const tbody = $('active').tBodies[0];
    for (const [id, r] of state.rows) {
      if (!state.active.has(id)) { r.tr.remove(); state.rows.delete(id); }
    }
    const ids = [...state.active.keys()].sort((a, b) => jobSeq(b) - jobSeq(a));
    for (const id of ids) {
      if (!state.rows.has(id)) state.rows.set(id, makeRow(id));
      updateRow(state.rows.get(id), state.active.get(id).job);
    }
    const order = ids.map((id) => state.rows.get(id).tr);
    if (order.some((tr, i) => tbody.children[i] !== tr)) tbody.append(...order);
    $('active-wrap').hidden = ids.length === 0;
    $('active-empty').hidden = ids.length > 0;
    $('active-count').textContent = ids.length ? `(${ids.length})` : '';
  }

  function makeRow(id) {
    const td = (cls) => el('td', { class: cls });
    const cells = {
      id: el('td', {}, [jobLink(id)]), app: td(), tenant: td(), policy: td(), elapsed: td('num'),
      cpu: td('num'), mem: td('mem'), io: td('num'), action: td(),
    };
    const btn = el('button', { type: 'button', class: 'cancel', text: 'Cancel' });
    btn.addEventListener('click', () => cancelJob(id, btn));
    cells.action.append(btn);
    const fill = el('div', { class: 'fill' }), peak = el('div', { class: 'peak' });
    const bar = el('div', { class: 'bar' }, [fill, peak]), label = el('span', { class: 'mem-text' });
    cells.mem.append(bar, label);
    const tr = el('tr', { 'data-job': id }, Object.values(cells));
    return { tr, cells, bar, fill, peak, label };
  }

  // setText and setProp write only what changed: a thousand rows are
  // refreshed every second, and an unchanged write still costs a relayout.
  function setText(node, text) {
    if (node.textContent !== text) node.textContent = text;
  }
  function setProp(obj, key, value) {
    if (obj[key] !== value) obj[key] = value;
  }

  function updateRow(r, job) {
    if (!r || !job) return;
    const c = r.cells;
    setText(c.app, job.app || '');
    setText(c.tenant, job.tenant || '');
    setText(c.policy, job.policy || '');
    setText(c.elapsed, fmtDur(elapsedMs(job)));
    const pct = job.live?.cpu_percent;
    setText(c.cpu, typeof pct === 'number' ? `${pct.toFixed(1)}%` : '—');
    setText(c.io, fmtIO(job));
    updateMem(r, job);
  }

  // updateMem draws current memory against the limit (peak as a tick).
  function updateMem(r, job) {
    const cur = job.live?.memory_current_bytes ?? -1;
    const peak = job.live?.memory_peak_bytes ?? -1;
    const limit = job.limits?.memory_max_bytes || 0;
    const pct = (n) => `${Math.max(0, Math.min(100, (n / limit) * 100)).toFixed(1)}%`;
    setProp(r.bar, 'hidden', !limit);
    if (limit) {
      setProp(r.fill.style, 'width', cur >= 0 ? pct(cur) : '0%');
      setProp(r.fill, 'className', `fill${cur / limit > 0.9 ? ' hot' : cur / limit > 0.75 ? ' warm' : ''}`);
      setProp(r.peak, 'hidden', peak < 0);
      setProp(r.peak.style, 'left', pct(peak));
      setText(r.label, `${fmtBytes(cur)} / ${fmtBytes(limit, true)}`);
    } else {
      setText(r.label, cur < 0 && peak < 0 ? '—' : `${fmtBytes(cur)} (peak ${fmtBytes(peak)})`);
    }
    setProp(r.cells.mem, 'title', `current ${fmtBytes(cur)}, peak ${fmtBytes(peak)}, limit ${limit ? fmtBytes(limit) : 'none'}`);
  }

  async function cancelJob(id, btn) {
    if (!window.confirm(`Cancel ${id}?`)) return;
    btn.disabled = true;
    try {
      await api(`${API}/jobs/${encodeURIComponent(id)}/cancel`, 'POST');
      showMessage(`${id}: cancelling.`, 'info');
    } catch (e) {
      btn.disabled = false;
      report(e);
    }
  }

  // ---------- history ----------

  // historyFilters reads the filter inputs (times as RFC 3339).
  function historyFilters() {
    return {
      tenant: $('f-tenant').value.trim(), app: $('f-app').value.trim(), reason: $('f-reason').value,
      since: inputTime($('f-since').value), until: inputTime($('f-until').value),
    };
  }

  // matchesHistory: would the current history query list this ended job?
  function matchesHistory(job) {
    const f = state.history.filters;
    if (!f || isOpen(job)) return false;
    if (state.history.jobs.some((j) => j.id === job.id)) return false;
    const t = ts(job.started_at);
    return (!f.tenant || job.tenant === f.tenant) && (!f.app || job.app === f.app) &&
      (!f.reason || job.reason === f.reason) && (!f.since || t >= ts(f.since)) && (!f.until || t < ts(f.until));
  }

  // loadHistory loads the first page (reset) or the next one; a newer
  // request makes older answers void, so the table never mixes queries.
  async function loadHistory(reset) {
    const h = state.history;
    const filters = reset ? historyFilters() : h.filters;
    const cursor = reset ? '' : h.next;
    if (!reset && !cursor) return;
    const gen = ++h.gen;
    $('more').disabled = true;
    try {
      const r = await api(`${API}/jobs?${query({ state: 'finished', ...filters, limit: PAGE, cursor })}`);
      if (gen !== h.gen) return;
      const got = r?.jobs || [];
      if (reset) h.jobs = got;
      else {
        const seen = new Set(h.jobs.map((j) => j.id));
        h.jobs.push(...got.filter((j) => !seen.has(j.id)));
      }
      h.filters = filters;
      h.next = r?.next || null;
      renderHistory();
    } finally {
      if (gen === h.gen) $('more').disabled = false;
    }
  }

  function renderHistory() {
    const { jobs, next } = state.history;
    const rows = jobs.map(historyRow);
    $('history').tBodies[0].replaceChildren(...rows);
    $('history-wrap').hidden = jobs.length === 0;
    $('history-empty').hidden = jobs.length > 0;
    $('more').hidden = !next;
  }

  function historyRow(job) {
    const [inB, outB] = jobIO(job);
    const exit = job.signal ? `${job.signal}` : (job.exit_code ?? '—');
    const cells = [
      el('td', {}, [jobLink(job.id)]), el('td', { text: job.app || '' }), el('td', { text: job.tenant || '' }),
      el('td', { text: job.policy || '' }), el('td', { class: `state-${job.state}`, text: job.state || '' }),
      el('td', { class: `reason reason-${job.reason}`, text: job.reason || '', title: job.detail || undefined }),
      el('td', { class: 'num', text: exit }), el('td', { text: fmtTime(ts(job.started_at)) }),
      el('td', { class: 'num', text: fmtDur(elapsedMs(job)) }),
      el('td', { class: 'num', text: cpuSeconds(job.usage).toFixed(2) }),
      el('td', { class: 'num', text: fmtBytes(job.usage?.memory_peak_bytes) }),
      el('td', { class: 'num', text: `${fmtBytes(inB)} / ${fmtBytes(outB)}` }),
    ];
    return el('tr', { 'data-job': job.id }, cells);
  }

  // ---------- job detail ----------

  // route opens or closes the detail view from location.hash (#job/ID).
  function route() {
    const m = /^#job\/([A-Za-z0-9]+)$/.exec(location.hash);
    if (!m) return closeDetail();
    const id = m[1].toUpperCase();
    openDetail(/^\d+$/.test(id) ? `JOB${id.padStart(8, '0')}` : id);
  }

  function openDetail(id) {
    if (state.detail.id === id) return;
    clearTimeout(state.detail.timer);
    Object.assign(state.detail, { id, job: null });
    $('detail-id').textContent = id;
    $('detail-state').textContent = '';
    $('detail-error').hidden = true;
    $('detail-fields').replaceChildren();
    closeLive();
    $('output-section').hidden = true;
    $('output-text').textContent = '';
    state.detail.outputKey = '';
    drawChart($('chart-cpu'), [], {});
    drawChart($('chart-mem'), [], {});
    $('detail').hidden = false;
    $('lists').hidden = true;
    window.scrollTo(0, 0);
    if (state.loggedIn) loadDetail().catch(report);
  }

  function closeDetail() {
    closeLive();
    clearTimeout(state.detail.timer);
    state.detail.gen++;
    Object.assign(state.detail, { id: null, job: null });
    $('detail').hidden = true;
    $('lists').hidden = false;
  }

  // loadDetail fetches the open job; running jobs refresh every 2 s.
  async function loadDetail() {
    const d = state.detail;
    const id = d.id;
    if (!id) return;
    clearTimeout(d.timer);
    const gen = ++d.gen;
    let r;
    try {
      r = await api(`${API}/jobs/${encodeURIComponent(id)}`);
    } catch (e) {
      if (gen !== d.gen) return;
      if (e.status !== 0 && e.status !== 401) {
        $('detail-error').textContent = e.message;
        $('detail-error').hidden = false;
      }
      if (e.status === 0 || e.status >= 500) d.timer = setTimeout(() => loadDetail().catch(report), 2000);
      return;
    }
    if (gen !== d.gen || d.id !== id) return;
    d.job = r?.job;
    $('detail-error').hidden = true;
    renderDetail(d.job, r?.samples || []);
    if (d.job && isOpen(d.job)) d.timer = setTimeout(() => loadDetail().catch(report), 2000);
  }

  function renderDetail(job, samples) {
    if (!job) return;
    $('detail-state').textContent = job.state + (job.reason ? ` · ${job.reason}` : '');
    $('detail-state').className = `badge state-${job.state}`;
    const dl = $('detail-fields');
    // The command keeps its line breaks (a multi-line sh -c script).
    dl.replaceChildren(...detailEntries(job).flatMap(([k, v]) => [el('dt', { text: k }), el('dd', { text: v, class: k === 'command' ? 'pre' : undefined })]));
    drawCharts(job, samples);
    loadOutput(job).catch(report);
  }

  // OUTPUT_TAIL is how much of a spool the detail page shows: its end.
  const OUTPUT_TAIL = 1 << 20;

  // loadOutput shows a job's output (stdout and stderr as written). A
  // spooled job's is its spool: a running job's read again at each refresh
  // while follow is on, an ended job's once. A running job that keeps no
  // spool is followed live from its ring (openLive); once it has ended its
  // output is gone, and the last of it stays on the page.
  async function loadOutput(job) {
    const sec = $('output-section');
    const d = state.detail;
    if (!job.spool) {
      if (isOpen(job) && $('output-follow').checked) { sec.hidden = false; openLive(job); }
      else if (!d.live) sec.hidden = true;
      $('output-download').hidden = true;
      return;
    }
    $('output-download').hidden = false;
    sec.hidden = false;
    const url = `${API}/jobs/${encodeURIComponent(job.id)}/output?stream=all`;
    $('output-download').href = url + '&download=1';
    const key = `${job.id}:${job.state}`;
    if (d.outputKey === key && (!isOpen(job) || !$('output-follow').checked)) return;
    d.outputKey = key;
    const res = await fetch(url, { credentials: 'same-origin', cache: 'no-store', headers: { Range: `bytes=-${OUTPUT_TAIL}` } });
    if (d.id !== job.id) return;
    let text = '';
    if (res.ok) text = new TextDecoder().decode(await res.arrayBuffer());
    else if (res.status !== 416) text = `(${res.status}: ${(await res.text()).trim()})`; // 416: nothing spooled yet
    const total = /\/(\d+)$/.exec(res.headers.get('Content-Range') || '');
    $('output-note').textContent = total && Number(total[1]) > OUTPUT_TAIL ? `last ${fmtBytes(OUTPUT_TAIL)} of ${fmtBytes(Number(total[1]))}` : '';
    const pre = $('output-text');
    const atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
    pre.textContent = text;
    if ($('output-follow').checked && atEnd) pre.scrollTop = pre.scrollHeight;
  }

  // openLive follows a running job's events (GET …/events, Server-Sent
  // Events from its ring) into the output pane, keeping its last
  // OUTPUT_TAIL characters; the job's end closes the stream.
  function openLive(job) {
    const d = state.detail;
    if (d.live && d.live.id === job.id) return;
    closeLive();
    const pre = $('output-text');
    const live = { id: job.id, chunks: [], size: 0, es: new EventSource(`${API}/jobs/${encodeURIComponent(job.id)}/events`), queued: false };
    d.live = live;
    $('output-note').textContent = 'live';
    // Chunks are joined and trimmed to the last OUTPUT_TAIL once a frame,
    // not per event: a chatty job costs one copy a frame.
    const show = () => {
      live.queued = false;
      if (d.live !== live) return;
      let text = live.chunks.join('');
      if (text.length > OUTPUT_TAIL) text = text.slice(-OUTPUT_TAIL);
      live.chunks = [text];
      live.size = text.length;
      const atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
      pre.textContent = text;
      if ($('output-follow').checked && atEnd) pre.scrollTop = pre.scrollHeight;
    };
    const add = (t) => {
      live.chunks.push(t);
      live.size += t.length;
      if (!live.queued) { live.queued = true; requestAnimationFrame(show); }
    };
    // One decoder a stream: a character split between two events is
    // decoded whole.
    const decoders = { stdout: new TextDecoder(), stderr: new TextDecoder() };
    const text = (name, ev) => ev.encoding === 'base64'
      ? decoders[name].decode(Uint8Array.from(atob(ev.data), (c) => c.charCodeAt(0)), { stream: true })
      : ev.data;
    for (const name of ['stdout', 'stderr']) live.es.addEventListener(name, (e) => add(text(name, JSON.parse(e.data))));
    live.es.addEventListener('gap', (e) => {
      const g = JSON.parse(e.data).data;
      add(`[… events ${g.from}–${g.to} are no longer kept …]\n`);
    });
    const ended = (note) => { live.es.close(); if (d.live === live) $('output-note').textContent = note; };
    live.es.addEventListener('exit', (e) => {
      const x = JSON.parse(e.data).data;
      add(`[exit ${x.code}, reason ${x.reason}]\n`);
      ended('ended: not spooled, so not kept');
    });
    live.es.addEventListener('gone', () => ended('ended: not spooled, so not kept'));
    // A stream the server refused (a login that expired, the job gone) or
    // that cannot come back: say so, rather than "live".
    live.es.onerror = () => {
      if (live.es.readyState === EventSource.CLOSED) ended('stream closed: reload to follow again');
      else if (d.live === live) $('output-note').textContent = 'reconnecting…';
    };
    live.es.onopen = () => { if (d.live === live) $('output-note').textContent = 'live'; };
  }

  function closeLive() {
    const d = state.detail;
    if (d.live) { d.live.es.close(); d.live = null; }
  }

  // detailEntries lists every record field as [label, text], known ones
  // formatted, unknown ones as JSON (so nothing the server sends is hidden).
  function detailEntries(job) {
    const t = (s) => (s ? `${fmtTime(ts(s))}  (${s})` : undefined);
    const ns = (n) => (n ? fmtDur(n / 1e6) : undefined);
    const l = job.limits || {}, lv = job.live;
    let u = job.usage || {}, tr = job.traffic || {};
    // A running job's record holds no usage yet: show the live reading
    // where the record has none, never its zeros.
    if (lv && isOpen(job)) {
      if (!u.cpu_user_ns && !u.cpu_system_ns && lv.cpu_ns) u = { ...u, cpu_user_ns: lv.cpu_ns, cpu_live: true };
      if (!u.memory_peak_bytes && lv.memory_peak_bytes > 0) u = { ...u, memory_peak_bytes: lv.memory_peak_bytes };
      if (!tr.stdin_bytes && !tr.stdout_bytes && !tr.stderr_bytes) tr = { ...tr, stdin_bytes: lv.stdin_bytes, stdout_bytes: lv.stdout_bytes, stderr_bytes: lv.stderr_bytes };
    }
    const rows = [
      ['id', job.id], ['state', job.state], ['reason', job.reason], ['detail', job.detail],
      ['exit code', job.exit_code], ['signal', job.signal], ['cancelled by', job.cancelled_by],
      ['app', job.app], ['tenant', job.tenant], ['class (policy)', job.policy],
      ['command', (job.command || []).map(shellQuote).join(' ')],
      ['remote address', job.remote_addr], ['user agent', job.user_agent], ['protocol', job.protocol],
      ['sandboxed', job.sandboxed ? 'yes' : 'no'], ['cgroup', job.cgroup], ['pid', job.pid],
      ['started', t(job.started_at)], ['ended', t(job.ended_at)], ['last seen', t(job.last_seen)],
      ['elapsed', fmtDur(elapsedMs(job))],
      u.cpu_live ? ['cpu (live)', `${(u.cpu_user_ns / 1e9).toFixed(3)} s`]
        : ['cpu user / system', `${((u.cpu_user_ns || 0) / 1e9).toFixed(3)} s / ${((u.cpu_system_ns || 0) / 1e9).toFixed(3)} s`],
      ['cpu throttled', `${((u.cpu_throttled_ns || 0) / 1e9).toFixed(3)} s`],
      ['memory peak', fmtBytes(u.memory_peak_bytes)], ['oom kills', u.oom_kills], ['pids peak', u.pids_peak],
      ['stdin / stdout / stderr', [tr.stdin_bytes, tr.stdout_bytes, tr.stderr_bytes].map((n) => fmtBytes(n || 0)).join(' / ')],
      ['messages in / out', `${tr.messages_in || 0} / ${tr.messages_out || 0}`],
      ['limit memory', l.memory_max_bytes && fmtBytes(l.memory_max_bytes, true)], ['limit cpu cores', l.cpu_cores],
      ['limit pids', l.pids_max], ['limit cpu time', ns(l.cpu_time_ns)], ['limit wall time', ns(l.wall_time_ns)],
      ['limit idle', ns(l.idle_timeout_ns)], ['limit output', l.max_output_bytes && fmtBytes(l.max_output_bytes, true)],
      ['grace', ns(l.grace_ns)],
    ];
    if (lv) {
      rows.push(['live cpu', `${((lv.cpu_ns || 0) / 1e9).toFixed(3)} s` + (typeof lv.cpu_percent === 'number' ? ` (${lv.cpu_percent.toFixed(1)}%)` : '')],
        ['live memory / peak', `${fmtBytes(lv.memory_current_bytes)} / ${fmtBytes(lv.memory_peak_bytes)}`],
        ['live pids', lv.pids], ['live io in / out', fmtIO(job)], ['sampled', t(lv.sampled_at)]);
    }
    const known = new Set(['v', 'id', 'state', 'reason', 'detail', 'exit_code', 'signal', 'cancelled_by', 'app', 'tenant',
      'policy', 'command', 'remote_addr', 'user_agent', 'protocol', 'sandboxed', 'cgroup', 'pid', 'started_at', 'ended_at',
      'last_seen', 'usage', 'traffic', 'limits', 'live']);
    for (const [k, v] of Object.entries(job)) if (!known.has(k)) rows.push([k, JSON.stringify(v)]);
    return rows.filter(([, v]) => v !== undefined && v !== null && v !== '').map(([k, v]) => [k, String(v)]);
  }

  const shellQuote = (s) => (/^[\w@%+=:,./-]+$/.test(s) ? s : `'${String(s).replace(/'/g, `'\\''`)}'`);

  // drawCharts turns samples into CPU % (delta cpu / delta t) and memory.
  function drawCharts(job, samples) {
    const pts = samples.map((s) => ({ t: ts(s.t), cpu: s.cpu_ns, mem: s.mem_bytes })).filter((p) => Number.isFinite(p.t));
    const cpu = [];
    for (let i = 1; i < pts.length; i++) {
      const dt = (pts[i].t - pts[i - 1].t) * 1e6; // ns
      if (dt > 0) cpu.push({ t: pts[i].t, v: Math.max(0, ((pts[i].cpu - pts[i - 1].cpu) / dt) * 100) });
    }
    // One rate covers the whole interval: draw it from the first sample.
    if (cpu.length === 1) cpu.unshift({ t: pts[0].t, v: cpu[0].v });
    const enough = pts.length >= 2;
    drawChart($('chart-cpu'), enough ? cpu : [], { fmt: (v) => `${v.toFixed(1)}%`, minTop: 10 });
    const mem = pts.filter((p) => p.mem >= 0).map((p) => ({ t: p.t, v: p.mem }));
    drawChart($('chart-mem'), enough ? mem : [], {
      fmt: (v) => fmtBytes(Math.round(v)), fmtLimit: (v) => fmtBytes(v, true), limit: job.limits?.memory_max_bytes || 0, minTop: 1 << 20,
      empty: enough && mem.length < 2 ? 'Memory not known (job not sandboxed).' : undefined,
    });
  }

  // drawChart renders points [{t ms, v}] into an <svg> (viewBox 600x190):
  // axes, a polyline.series, y min/max labels, start/end time labels and,
  // with opts.limit, a line.limit. console.css styles them (the series
  // unfilled, the limit dashed). Fewer than 2 points: a message.
  function drawChart(root, points, opts) {
    const W = 600, H = 190, L = 64, R = 12, T = 26, B = 24;
    root.replaceChildren();
    if (points.length < 2) {
      root.append(svg('text', { x: W / 2, y: H / 2, 'text-anchor': 'middle', class: 'chart-empty' }, opts.empty || 'Not enough samples yet.'));
      return;
    }
    const t0 = points[0].t, t1 = points[points.length - 1].t;
    const vals = points.map((p) => p.v);
    const vmin = Math.min(...vals), vmax = Math.max(...vals);
    // Scaled to the data, so small usage is not a flat line at the bottom;
    // a limit near it is drawn as a line, one far above it only named.
    const near = opts.limit && opts.limit <= Math.max(vmax, opts.minTop || 0) * 1.5;
    const top = Math.max(vmax, near ? opts.limit : 0, opts.minTop || 0) * 1.08;
    const x = (t) => L + ((t - t0) / Math.max(1, t1 - t0)) * (W - L - R);
    const y = (v) => H - B - (v / top) * (H - T - B);
    root.append(
      svg('line', { class: 'axis', x1: L, y1: T, x2: L, y2: H - B }),
      svg('line', { class: 'axis', x1: L, y1: H - B, x2: W - R, y2: H - B }),
      svg('text', { class: 'label', x: L - 4, y: T + 4, 'text-anchor': 'end' }, opts.fmt(top)),
      svg('text', { class: 'label', x: L - 4, y: H - B, 'text-anchor': 'end' }, opts.fmt(0)),
      svg('text', { class: 'label', x: L, y: H - 6 }, fmtClock(t0)),
      svg('text', { class: 'label', x: W - R, y: H - 6, 'text-anchor': 'end' }, fmtClock(t1)),
      svg('text', { class: 'label', x: W - R, y: 14, 'text-anchor': 'end' },
        `min ${opts.fmt(vmin)} · max ${opts.fmt(vmax)} · ${fmtDur(t1 - t0)}`),
    );
    if (opts.limit) {
      const text = `limit ${opts.fmtLimit ? opts.fmtLimit(opts.limit) : opts.fmt(opts.limit)}`;
      if (near) {
        root.append(svg('line', { class: 'limit', x1: L, y1: y(opts.limit), x2: W - R, y2: y(opts.limit) }),
          svg('text', { class: 'label limit-label', x: L + 4, y: y(opts.limit) - 3 }, text));
      } else {
        root.append(svg('text', { class: 'label limit-label', x: L + 4, y: T - 4 }, `${text} (above the scale)`));
      }
    }
    const line = points.map((p) => `${x(p.t).toFixed(1)},${y(p.v).toFixed(1)}`).join(' ');
    root.append(svg('polyline', { class: 'series', points: line }));
  }

  // ---------- accounting and tenants ----------

  // acctQuery reads the range and grouping; an untouched "until" follows now.
  function acctQuery() {
    if (state.acct.untilAuto) $('a-until').value = localInput(Date.now() + 60000);
    return { by: $('a-by').value, since: inputTime($('a-since').value), until: inputTime($('a-until').value) };
  }

  async function loadAcct() {
    const q = acctQuery();
    $('acct-csv').href = `${API}/acct?${query({ ...q, format: 'csv' })}`;
    const gen = ++state.acct.gen;
    const r = await api(`${API}/acct?${query(q)}`);
    if (gen !== state.acct.gen) return;
    renderAcct(r?.groups || [], q.by);
  }

  function renderAcct(groups, by) {
    const hasCost = groups.some((g) => typeof g.cost === 'number');
    const heads = [by.toUpperCase(), 'JOBS', 'CPU s', 'MEM PEAK', 'GiB·h', 'BYTES', 'REASONS'].concat(hasCost ? ['COST'] : []);
    const table = $('acct-table');
    table.tHead.rows[0].replaceChildren(...heads.map((h, i) => el('th', { class: (i > 0 && i < 6) || i === 7 ? 'num' : undefined, text: h })));
    const rows = groups.map((g) => el('tr', { 'data-key': g.key }, [
      el('td', { text: g.key }), el('td', { class: 'num', text: g.jobs }),
      el('td', { class: 'num', text: (g.cpu_seconds || 0).toFixed(2) }),
      el('td', { class: 'num', text: fmtBytes(g.memory_peak_bytes) }),
      el('td', { class: 'num', text: (g.gib_hours || 0).toFixed(3) }),
      el('td', { class: 'num', text: fmtBytes(g.bytes || 0) }),
      el('td', { text: fmtReasons(g.reasons) }),
      ...(hasCost ? [el('td', { class: 'num', text: typeof g.cost === 'number' ? g.cost.toFixed(2) : '' })] : []),
    ]));
    table.tBodies[0].replaceChildren(...rows);
    $('acct-wrap').hidden = groups.length === 0;
    $('acct-empty').hidden = groups.length > 0;
  }

  // fmtReasons: {"exit":2,"oom":1} -> "exit 2, oom 1" (sorted by name).
  const fmtReasons = (m) => Object.keys(m || {}).sort().map((k) => `${k} ${m[k]}`).join(', ');

  async function loadTenants() {
    const gen = ++state.tenantsGen;
    const r = await api(`${API}/tenants`);
    if (gen === state.tenantsGen) renderTenants(r);
  }

  function renderTenants(r) {
    if (!r) return;
    const globalCap = r.max_sessions || 0;
    const cap = (n) => (n > 0 ? String(n) : globalCap > 0 ? `${globalCap} (global)` : '∞');
    const rows = (r.tenants || []).map((t) => el('tr', { 'data-tenant': t.name }, [
      el('td', { text: t.name }), el('td', { class: 'num', text: `${t.running} / ${cap(t.max_sessions)}` }),
      el('td', { class: 'num', text: t.today?.jobs ?? 0 }),
      el('td', { class: 'num', text: (t.today?.cpu_seconds || 0).toFixed(2) }),
    ]));
    $('tenants').tBodies[0].replaceChildren(...rows);
    $('tenants-total').textContent = `(${r.running ?? 0} / ${globalCap || '∞'} running)`;
  }

  // ---------- wiring ----------

  function wire() {
    $('login-form').addEventListener('submit', submitLogin);
    $('logout').addEventListener('click', logout);
    $('detail-close').addEventListener('click', () => {
      if (location.hash) history.pushState(null, '', location.pathname + location.search);
      closeDetail();
    });
    window.addEventListener('hashchange', () => { if (state.loggedIn) route(); });
    $('message').addEventListener('click', () => { $('message').hidden = true; });

    const reloadHistory = () => loadHistory(true).catch(report);
    for (const id of ['f-reason', 'f-since', 'f-until']) $(id).addEventListener('change', reloadHistory);
    for (const id of ['f-tenant', 'f-app']) $(id).addEventListener('input', () => debounce('history', 400, reloadHistory));
    $('filters').addEventListener('submit', (e) => { e.preventDefault(); reloadHistory(); });
    $('f-clear').addEventListener('click', () => {
      for (const id of ['f-tenant', 'f-app', 'f-reason', 'f-since', 'f-until']) $(id).value = '';
      reloadHistory();
    });
    $('more').addEventListener('click', () => loadHistory(false).catch(report));

    const reloadAcct = () => loadAcct().catch(report);
    $('a-until').addEventListener('change', () => { state.acct.untilAuto = !$('a-until').value; });
    for (const id of ['a-since', 'a-until', 'a-by']) $(id).addEventListener('change', reloadAcct);
    $('a-refresh').addEventListener('click', reloadAcct);
    $('acct-filters').addEventListener('submit', (e) => { e.preventDefault(); reloadAcct(); });
    $('a-since').value = localInput(Date.now() - 7 * 24 * 3600 * 1000);
  }

  function init() {
    wire();
    startConsole(); // the first API call tells whether we are logged in
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', init);
  else init();
})();
