// The console's browser script: plain ES2020 run as one inline <script> (no build step). It talks
// to the HTTP API with the admin token as a bearer, reads GET /api/v1/stream with fetch() and a
// stream reader (EventSource cannot send headers) and writes data to the DOM with textContent only.
// `/*__CONFIG__*/null` is replaced with the JSON of ConsoleConfig (console.ts) when the page is built.
export const CONSOLE_SCRIPT = String.raw`
(function () {
  'use strict';

  var CONFIG = /*__CONFIG__*/null;
  var TOKEN_KEY = 'vmcp.console.adminToken';
  var LOG_MAX = 200;
  var RECENT_MAX = 20;
  var COMMANDS_MAX = 100;
  var STALE_MS = 4 * CONFIG.heartbeatMs;
  var VEHICLE_ID = new RegExp(CONFIG.vehicleIdPattern);
  var FINAL = ['succeeded', 'failed', 'rejected', 'unsupported', 'expired', 'cancelled'];

  // ---- DOM helpers: text only ----

  function $(id) { return document.getElementById(id); }

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function badge(text) { return el('span', 'badge ' + text, text); }

  function p2(n) { return (n < 10 ? '0' : '') + n; }
  function p3(n) { return (n < 10 ? '00' : n < 100 ? '0' : '') + n; }

  function fmtClock(ms) {
    var d = new Date(ms);
    return p2(d.getHours()) + ':' + p2(d.getMinutes()) + ':' + p2(d.getSeconds()) + '.' + p3(d.getMilliseconds());
  }

  function fmtDateTime(ms) {
    if (typeof ms !== 'number' || !isFinite(ms)) return '—';
    var d = new Date(ms);
    return d.getFullYear() + '-' + p2(d.getMonth() + 1) + '-' + p2(d.getDate()) + ' ' + fmtClock(ms);
  }

  function clip(text, max) { return text.length > max ? text.slice(0, max) + '…' : text; }

  function fmtValue(v) {
    if (v === undefined) return '—';
    if (v !== null && typeof v === 'object') return clip(JSON.stringify(v), 500);
    return clip(String(v), 500);
  }

  function summarize(data) {
    if (!data || typeof data !== 'object') return fmtValue(data);
    var parts = [];
    Object.keys(data).forEach(function (k) {
      var v = data[k];
      if (k === 'vendor' && v && typeof v === 'object') {
        Object.keys(v).forEach(function (t) { parts.push('vendor.' + t + '=' + fmtValue(v[t])); });
      } else {
        parts.push(k + '=' + fmtValue(v));
      }
    });
    return parts.length ? clip(parts.join(', '), 600) : '(no data)';
  }

  function showText(node, text) {
    node.textContent = text || '';
    node.hidden = !text;
  }

  function setInvalid(input, message, errorNode) {
    input.setAttribute('aria-invalid', 'true');
    showText(errorNode, message);
    input.focus();
  }

  function clearInvalid(form, errorNode) {
    Array.prototype.forEach.call(form.querySelectorAll('[aria-invalid]'), function (n) {
      n.removeAttribute('aria-invalid');
    });
    showText(errorNode, '');
  }

  // ---- the API ----

  function ApiError(status, code, message) {
    this.status = status;
    this.code = code;
    this.message = message;
  }

  function describe(e) {
    if (e instanceof ApiError) return e.code + ': ' + e.message + (e.status ? ' (HTTP ' + e.status + ')' : '');
    return 'error: ' + String(e && e.message ? e.message : e);
  }

  function errorFrom(res, text) {
    var body = null;
    try { body = text ? JSON.parse(text) : null; } catch (err) { body = null; }
    var code = body && typeof body.code === 'string' ? body.code : 'http_' + res.status;
    var message = body && typeof body.message === 'string' ? body.message : (res.statusText || 'request failed');
    return new ApiError(res.status, code, message);
  }

  function authHeaders(extra) {
    var h = { Authorization: 'Bearer ' + state.token };
    Object.keys(extra || {}).forEach(function (k) { h[k] = extra[k]; });
    return h;
  }

  async function api(method, path, body) {
    var init = { method: method, cache: 'no-store', headers: authHeaders({ Accept: 'application/json' }) };
    if (body !== undefined) {
      init.headers['Content-Type'] = 'application/json';
      // A string is a JSON text already (command params go as the operator typed them).
      init.body = typeof body === 'string' ? body : JSON.stringify(body);
    }
    var res;
    try {
      res = await fetch(path, init);
    } catch (err) {
      throw new ApiError(0, 'network_error', 'cannot reach the gateway (' + String(err && err.message ? err.message : err) + ')');
    }
    var text = await res.text();
    if (!res.ok) {
      var e = errorFrom(res, text);
      if (res.status === 401) unauthorized(e);
      throw e;
    }
    if (text === '') return null;
    try {
      return JSON.parse(text);
    } catch (err) {
      throw new ApiError(res.status, 'bad_response', 'the gateway answered something that is not JSON');
    }
  }

  function enc(s) { return encodeURIComponent(s); }

  // A vehicle id as a path segment. The ids "." and ".." are valid (PROTOCOL.md 2.1) but a browser
  // resolves them as dot segments, escaped or not, so the request would go to another resource.
  function vehicleSegment(id) {
    if (id === '.' || id === '..') {
      throw new ApiError(0, 'not_addressable', 'a browser cannot put the vehicle id "' + id +
        '" in a URL path (it is a dot segment); use a client that sends the path as is, such as vmcp or curl --path-as-is');
    }
    return encodeURIComponent(id);
  }

  // ---- state ----

  var state = {
    token: null,
    pages: { cursors: [null], index: 0, next: null, gen: 0 },
    rows: new Map(),          // vehicle id -> { tr, badge, seq, session, last }
    selected: null,           // vehicle id shown in the panel
    vehicle: null,            // its resource (GET /api/v1/vehicles/{id}), null if never seen
    vehicleGen: 0,
    recent: [],               // its uplink records, newest first
    commands: new Map(),      // command id -> command resource (the newest status seen)
    commandRows: new Map(),   // command id -> row cells, for the selected vehicle
    log: [],                  // { node, vehicleId }, newest first
    logQueue: [],
    logTimer: null,
    stream: null,             // AbortController of the running stream
    timers: {}
  };

  function debounce(name, ms, fn) {
    clearTimeout(state.timers[name]);
    state.timers[name] = setTimeout(fn, ms);
  }

  // ---- sign in and out ----

  var alertBox = $('alert');

  function showAlert(text) { showText(alertBox, text); }

  function storedToken() {
    try { return sessionStorage.getItem(TOKEN_KEY); } catch (e) { return null; }
  }

  function storeToken(token) {
    try {
      if (token === null) sessionStorage.removeItem(TOKEN_KEY);
      else sessionStorage.setItem(TOKEN_KEY, token);
    } catch (e) { /* storage disabled: the token lives in memory only */ }
  }

  async function signIn(token) {
    var button = $('connect');
    button.disabled = true;
    showAlert('');
    state.token = token;
    try {
      await loadVehicles();
    } catch (e) {
      if (!(e instanceof ApiError && e.status === 401)) showAlert(describe(e));
      state.token = null;
      return false;
    } finally {
      button.disabled = false;
    }
    storeToken(token);
    $('token').value = '';
    $('auth-form').hidden = true;
    $('session-tools').hidden = false;
    $('workspace').hidden = false;
    startStream();
    return true;
  }

  function signOut() {
    stopStream();
    state.token = null;
    storeToken(null);
    $('workspace').hidden = true;
    $('session-tools').hidden = true;
    $('auth-form').hidden = false;
    setStreamState('', 'Not connected');
  }

  function unauthorized(e) {
    if (state.token === null) return;
    var wasIn = !$('workspace').hidden;
    if (wasIn) signOut();
    else storeToken(null);
    showAlert(describe(e) + ' — enter the admin token again.');
    $('token').focus();
  }

  $('auth-form').addEventListener('submit', function (ev) {
    ev.preventDefault();
    var token = $('token').value.trim();
    if (!token) {
      $('token').setAttribute('aria-invalid', 'true');
      showAlert('Enter the admin token.');
      $('token').focus();
      return;
    }
    // A bearer token is printable ASCII (RFC 6750); fetch would refuse other characters in a header.
    if (/[^!-~]/.test(token)) {
      $('token').setAttribute('aria-invalid', 'true');
      showAlert('unauthorized: a bearer token has only printable ASCII characters and no spaces — enter the admin token again.');
      $('token').focus();
      return;
    }
    $('token').removeAttribute('aria-invalid');
    signIn(token);
  });

  $('sign-out').addEventListener('click', function () {
    signOut();
    showAlert('');
    $('token').focus();
  });

  // ---- vehicles list ----

  function pageSize() { return Number($('page-size').value) || 25; }

  async function loadVehicles() {
    var p = state.pages;
    var gen = ++p.gen;
    var cursor = p.cursors[p.index];
    var q = '?limit=' + pageSize() + ($('online-only').checked ? '&online=true' : '') +
      (cursor ? '&cursor=' + enc(cursor) : '');
    var page;
    try {
      page = await api('GET', '/api/v1/vehicles' + q);
    } catch (e) {
      if (gen === p.gen) showText($('vehicles-error'), describe(e));
      throw e;
    }
    if (gen !== p.gen) return;
    showText($('vehicles-error'), '');
    p.next = page.next || null;
    renderVehicles(page.items || []);
  }

  function reloadVehicles() {
    loadVehicles().catch(function () { /* shown in the list's error box */ });
  }

  function setBadge(row, online) {
    row.online = online;
    row.badge.textContent = online ? 'online' : 'offline';
    row.badge.className = 'badge ' + (online ? 'online' : 'offline');
  }

  function renderVehicles(items) {
    var body = $('vehicles-body');
    var rows = new Map();
    var trs = items.map(function (v) {
      var tr = el('tr');
      var idCell = el('td');
      var button = el('button', 'vid', v.id);
      button.type = 'button';
      button.addEventListener('click', function () { selectVehicle(v.id); });
      idCell.appendChild(button);
      var statusCell = el('td');
      var row = { tr: tr, button: button, badge: el('span'), seq: el('td', 'num', v.lastUplinkSeq), last: v.lastUplinkSeq,
        session: v.session ? v.session.id : null, online: false };
      setBadge(row, !!v.online);
      statusCell.appendChild(row.badge);
      tr.appendChild(idCell);
      tr.appendChild(statusCell);
      tr.appendChild(row.seq);
      rows.set(v.id, row);
      return tr;
    });
    body.replaceChildren.apply(body, trs);
    state.rows = rows;
    markSelected();
    var p = state.pages;
    $('vehicles-empty').hidden = items.length > 0;
    $('page-prev').disabled = p.index === 0;
    $('page-next').disabled = !p.next;
    $('page-label').textContent = 'Page ' + (p.index + 1);
  }

  function markSelected() {
    state.rows.forEach(function (row, id) {
      var on = id === state.selected;
      row.tr.classList.toggle('selected', on);
      if (on) row.button.setAttribute('aria-current', 'true');
      else row.button.removeAttribute('aria-current');
    });
  }

  /** Whether a vehicle not in the table belongs on the page shown (ids are listed in order). */
  function belongsOnPage(id) {
    var ids = Array.from(state.rows.keys());
    if (ids.length === 0) return state.pages.index === 0;
    var afterStart = state.pages.index === 0 || id > ids[0];
    var beforeEnd = !state.pages.next || id < ids[ids.length - 1];
    return afterStart && beforeEnd;
  }

  function firstPage() {
    state.pages.cursors = [null];
    state.pages.index = 0;
    reloadVehicles();
  }

  $('online-only').addEventListener('change', firstPage);
  $('page-size').addEventListener('change', firstPage);
  $('vehicles-refresh').addEventListener('click', reloadVehicles);
  $('page-next').addEventListener('click', function () {
    var p = state.pages;
    if (!p.next) return;
    p.cursors = p.cursors.slice(0, p.index + 1);
    p.cursors.push(p.next);
    p.index++;
    reloadVehicles();
  });
  $('page-prev').addEventListener('click', function () {
    var p = state.pages;
    if (p.index === 0) return;
    p.index--;
    reloadVehicles();
  });

  $('open-form').addEventListener('submit', function (ev) {
    ev.preventDefault();
    var input = $('open-id');
    var id = input.value.trim();
    clearInvalid($('open-form'), $('open-error'));
    if (!VEHICLE_ID.test(id)) {
      setInvalid(input, 'A vehicle id is 1–64 characters of A–Z, a–z, 0–9 and . _ : -', $('open-error'));
      return;
    }
    selectVehicle(id);
  });

  // ---- the vehicle panel ----

  function selectVehicle(id) {
    if (state.selected !== id) {
      state.selected = id;
      state.vehicle = null;
      state.recent = [];
      $('vehicle-h').textContent = 'Vehicle ' + id;
      $('vehicle-none').hidden = true;
      $('vehicle-panel').hidden = false;
      $('vehicle-refresh').hidden = false;
      $('vehicle-facts').replaceChildren();
      $('latest-body').replaceChildren();
      renderRecent();
      showText($('cmd-error'), '');
      $('cmd-status').textContent = '';
      showText($('sensor-error'), '');
      $('sensor-result').textContent = '';
      renderCommands();
      markSelected();
      applyLogFilter();
    }
    return refreshVehicle();
  }

  async function refreshVehicle() {
    var id = state.selected;
    if (id === null) return;
    var gen = ++state.vehicleGen;
    try {
      var v = await api('GET', '/api/v1/vehicles/' + vehicleSegment(id));
      if (gen !== state.vehicleGen) return;
      var live = state.vehicle && state.vehicle.id === id ? state.recent : [];
      state.vehicle = v;
      if (!v.latest || typeof v.latest !== 'object') v.latest = {};
      var records = await loadRecent(id, v.lastUplinkSeq);
      if (gen !== state.vehicleGen) return;
      state.recent = [];
      records.concat(live).forEach(addRecent);
      // Records that arrived on the stream while this was loading are newer than the answer.
      live.forEach(function (r) { mergeLatest(r); });
      showText($('vehicle-error'), '');
      renderVehicle();
    } catch (e) {
      if (gen !== state.vehicleGen) return;
      if (e instanceof ApiError && e.code === 'vehicle_not_found') {
        state.vehicle = null;
        state.recent = [];
        showText($('vehicle-error'), describe(e) + ' — it has never connected. Commands sent now are delivered when it first connects.');
        renderVehicle();
      } else {
        showText($('vehicle-error'), describe(e));
      }
    }
  }

  async function loadRecent(id, last) {
    var windows = [RECENT_MAX, 200, 1000];
    var items = [];
    for (var i = 0; i < windows.length; i++) {
      var after = Math.max(0, last - windows[i]);
      var limit = Math.min(1000, windows[i] + 50);
      var page = await api('GET', '/api/v1/vehicles/' + vehicleSegment(id) + '/uplink?afterSeq=' + after + '&limit=' + limit);
      items = page.items || [];
      if (items.length >= RECENT_MAX || after === 0) break;
    }
    return items.slice(-RECENT_MAX);
  }

  function addRecent(r) {
    if (state.recent.some(function (x) { return x.seq === r.seq; })) return false;
    state.recent.push(r);
    state.recent.sort(function (a, b) { return b.seq - a.seq; });
    if (state.recent.length > RECENT_MAX) state.recent.length = RECENT_MAX;
    return true;
  }

  function mergeLatest(r) {
    var v = state.vehicle;
    if (!v || r.seq <= v.lastUplinkSeq) return;
    v.lastUplinkSeq = r.seq;
    if (r.kind !== 'telemetry' || !r.data) return;
    Object.keys(r.data).forEach(function (k) {
      var val = r.data[k];
      if (k === 'vendor' && val && typeof val === 'object') {
        var merged = {};
        var old = v.latest.vendor && typeof v.latest.vendor === 'object' ? v.latest.vendor : {};
        Object.keys(old).forEach(function (t) { merged[t] = old[t]; });
        Object.keys(val).forEach(function (t) { merged[t] = val[t]; });
        v.latest.vendor = merged;
      } else {
        v.latest[k] = val;
      }
    });
  }

  function fact(dl, label, value) {
    var box = el('div');
    box.appendChild(el('dt', '', label));
    var dd = el('dd');
    if (value instanceof Node) dd.appendChild(value);
    else dd.textContent = value === null || value === undefined ? '—' : String(value);
    box.appendChild(dd);
    dl.appendChild(box);
  }

  function renderVehicle() {
    var v = state.vehicle;
    var dl = $('vehicle-facts');
    dl.replaceChildren();
    if (v) {
      var s = v.session;
      fact(dl, 'Status', badge(v.online ? 'online' : 'offline'));
      fact(dl, 'Last uplink seq', v.lastUplinkSeq);
      fact(dl, 'Session', s ? s.id : 'none');
      fact(dl, 'Connected at', s ? fmtDateTime(s.connectedAt) : '—');
      fact(dl, 'Remote address', s ? s.remote : '—');
      fact(dl, 'Protocol version', s ? s.version : '—');
      fact(dl, 'Keepalive', s ? s.keepalive + ' s' : '—');
    }
    renderLatest();
    renderRecent();
  }

  function renderLatest() {
    var body = $('latest-body');
    var latest = state.vehicle ? state.vehicle.latest : {};
    var keys = Object.keys(latest).sort();
    var rows = keys.map(function (k) {
      var tr = el('tr');
      tr.appendChild(el('td', '', k));
      tr.appendChild(el('td', typeof latest[k] === 'object' ? 'json' : '', fmtValue(latest[k])));
      return tr;
    });
    if (rows.length === 0) {
      var tr = el('tr');
      var td = el('td', 'muted', 'No telemetry yet.');
      td.colSpan = 2;
      tr.appendChild(td);
      rows.push(tr);
    }
    body.replaceChildren.apply(body, rows);
  }

  function renderRecent() {
    var body = $('uplink-body');
    body.replaceChildren.apply(body, state.recent.map(function (r) {
      var tr = el('tr');
      tr.appendChild(el('td', 'num', r.seq));
      var kind = el('td');
      kind.appendChild(badge(r.kind === 'event' ? 'event' : 'telemetry'));
      tr.appendChild(kind);
      tr.appendChild(el('td', '', fmtDateTime(r.timestamp)));
      tr.appendChild(el('td', 'json', summarize(r.data)));
      return tr;
    }));
    $('uplink-empty').hidden = state.recent.length > 0;
  }

  $('vehicle-refresh').addEventListener('click', function () { refreshVehicle(); });

  // ---- commands ----

  function rank(status) {
    if (status === 'pending') return 0;
    if (status === 'delivered') return 1;
    return FINAL.indexOf(status) >= 0 ? 2 : -1;
  }

  function upsertCommand(c) {
    var prev = state.commands.get(c.id);
    var merged = {};
    // A stale answer (an older status arriving after a newer event) never moves a status back.
    var older = prev && rank(c.status) < rank(prev.status);
    [older ? c : prev, older ? prev : c].forEach(function (src) {
      if (!src) return;
      Object.keys(src).forEach(function (k) { if (src[k] !== undefined) merged[k] = src[k]; });
    });
    if (prev && prev.name && !merged.name) merged.name = prev.name;
    state.commands.set(c.id, merged);
    if (state.commands.size > COMMANDS_MAX) {
      var oldest = state.commands.keys().next().value;
      state.commands.delete(oldest);
    }
    if (merged.vehicleId === state.selected) renderCommandRow(merged);
  }

  function renderCommands() {
    var body = $('commands-body');
    body.replaceChildren();
    state.commandRows = new Map();
    state.commands.forEach(function (c) {
      if (c.vehicleId === state.selected) renderCommandRow(c);
    });
    $('commands-empty').hidden = state.commandRows.size > 0;
  }

  function renderCommandRow(c) {
    var row = state.commandRows.get(c.id);
    if (!row) {
      var tr = el('tr');
      tr.dataset.commandId = c.id;
      row = { tr: tr, name: el('td'), seq: el('td', 'num'), status: el('td'), result: el('td', 'json'),
        sent: el('td'), action: el('td') };
      ['name', 'seq', 'status', 'result', 'sent', 'action'].forEach(function (k) { tr.appendChild(row[k]); });
      state.commandRows.set(c.id, row);
      $('commands-body').prepend(tr);
      $('commands-empty').hidden = true;
    }
    row.name.textContent = c.name || '—';
    row.name.title = c.id;
    row.seq.textContent = c.seq === undefined ? '—' : String(c.seq);
    row.status.replaceChildren(badge(c.status));
    row.result.textContent = c.result === null || c.result === undefined ? '—' : fmtValue(c.result);
    row.sent.textContent = c.createdAt ? fmtClock(c.createdAt) : '—';
    if (c.status === 'pending') {
      if (!row.cancel) {
        var b = el('button', '', 'Cancel');
        b.type = 'button';
        b.setAttribute('aria-label', 'Cancel command ' + (c.name || c.id) + ' (seq ' + c.seq + ')');
        b.addEventListener('click', function () { cancelCommand(c.id, b); });
        row.cancel = b;
        row.action.replaceChildren(b);
      }
    } else if (row.cancel) {
      row.cancel = null;
      row.action.replaceChildren();
    }
  }

  async function cancelCommand(id, button) {
    button.disabled = true;
    button.textContent = 'Cancelling…';
    showText($('cmd-error'), '');
    try {
      upsertCommand(await api('DELETE', '/api/v1/commands/' + enc(id)));
      $('cmd-status').textContent = 'Command cancelled.';
    } catch (e) {
      showText($('cmd-error'), 'Cancel failed: ' + describe(e));
      button.disabled = false;
      button.textContent = 'Cancel';
      refreshCommand(id);
    }
  }

  function refreshCommand(id) {
    api('GET', '/api/v1/commands/' + enc(id)).then(upsertCommand, function () { /* keep the last status */ });
  }

  $('command-form').addEventListener('submit', async function (ev) {
    ev.preventDefault();
    var form = $('command-form');
    var errorBox = $('cmd-error');
    var vehicleId = state.selected;
    clearInvalid(form, errorBox);
    $('cmd-status').textContent = '';
    var nameInput = $('cmd-name');
    var paramsInput = $('cmd-params');
    var ttlInput = $('cmd-ttl');
    var name = nameInput.value.trim();
    if (!name) return setInvalid(nameInput, 'Name is required, e.g. door.lock.', errorBox);
    var body = { name: name };
    var paramsText = paramsInput.value.trim();
    if (paramsText) {
      try {
        // Checked here; sent as typed, so numbers past 2^53, 1.50 or 1e400 reach the vehicle unchanged.
        body.params = JSON.parse(paramsText);
      } catch (e) {
        return setInvalid(paramsInput, 'Params must be valid JSON: ' + e.message, errorBox);
      }
    }
    var ttlText = ttlInput.value.trim();
    if (ttlText) {
      var ttl = Number(ttlText);
      var maxS = Math.floor(CONFIG.ttlMaxMs / 1000);
      if (!Number.isInteger(ttl) || ttl < 1 || ttl > maxS) {
        return setInvalid(ttlInput, 'TTL must be a whole number of seconds from 1 to ' + maxS + '.', errorBox);
      }
      body.ttlMs = ttl * 1000;
    }
    var bodyText = '{"name":' + JSON.stringify(name) + (paramsText ? ',"params":' + paramsText : '') +
      (body.ttlMs !== undefined ? ',"ttlMs":' + body.ttlMs : '') + '}';
    var button = $('cmd-send');
    button.disabled = true;
    try {
      var accepted = await api('POST', '/api/v1/vehicles/' + vehicleSegment(vehicleId) + '/commands', bodyText);
      upsertCommand({ id: accepted.id, vehicleId: vehicleId, seq: accepted.seq, name: name, status: accepted.status,
        result: null, params: body.params === undefined ? null : body.params, createdAt: Date.now(),
        expiresAt: accepted.expiresAt });
      if (vehicleId === state.selected) {
        $('cmd-status').textContent = 'Accepted ' + name + ' as seq ' + accepted.seq + ' (' + accepted.id + ').';
      }
    } catch (e) {
      showText(errorBox, describe(e));
    } finally {
      button.disabled = false;
    }
  });

  // ---- sensor reads ----

  $('sensor-form').addEventListener('submit', async function (ev) {
    ev.preventDefault();
    var form = $('sensor-form');
    var errorBox = $('sensor-error');
    var out = $('sensor-result');
    var vehicleId = state.selected;
    clearInvalid(form, errorBox);
    out.textContent = '';
    var chInput = $('sensor-channel');
    var toInput = $('sensor-timeout');
    var channel = Number(chInput.value.trim() === '' ? NaN : chInput.value);
    if (!Number.isInteger(channel) || channel < 0 || channel > 255) {
      return setInvalid(chInput, 'Channel must be a whole number from 0 to 255.', errorBox);
    }
    var timeoutText = toInput.value.trim();
    var timeoutMs = timeoutText === '' ? CONFIG.sensorTimeoutDefaultMs : Number(timeoutText);
    if (!Number.isInteger(timeoutMs) || timeoutMs < 1 || timeoutMs > CONFIG.sensorTimeoutMaxMs) {
      return setInvalid(toInput, 'Timeout must be a whole number of milliseconds from 1 to ' + CONFIG.sensorTimeoutMaxMs + '.', errorBox);
    }
    var button = $('sensor-read');
    button.disabled = true;
    button.textContent = 'Reading…';
    try {
      var r = await api('GET', '/api/v1/vehicles/' + vehicleSegment(vehicleId) + '/sensors/' + channel + '?timeoutMs=' + timeoutMs);
      if (vehicleId === state.selected) {
        var hex = typeof r.value === 'string' ? r.value : '';
        out.textContent = 'Channel ' + r.channel + ': ' + (hex ? '0x' + hex : '(empty)') + ' — ' + (hex.length / 2) + ' byte' +
          (hex.length === 2 ? '' : 's') + ', read at ' + fmtClock(Date.now());
      }
    } catch (e) {
      if (vehicleId === state.selected) showText(errorBox, describe(e));
    } finally {
      button.disabled = false;
      button.textContent = 'Read sensor';
    }
  });

  // ---- the live event log ----

  function logLine(kind, vehicleId, text, detail) {
    var li = el('li');
    var t = Date.now();
    var time = el('time', '', fmtClock(t));
    time.dateTime = new Date(t).toISOString();
    var parts = [time, el('span', 'kind ' + kind, kind)];
    if (vehicleId) parts.push(el('span', 'who', vehicleId));
    parts.push(el('span', 'what', text));
    parts.forEach(function (part, i) {
      if (i > 0) li.appendChild(document.createTextNode(' '));
      li.appendChild(part);
    });
    if (detail !== undefined) li.title = clip(JSON.stringify(detail), 2000);
    state.logQueue.push({ node: li, vehicleId: vehicleId || null });
    if (state.logQueue.length > LOG_MAX) state.logQueue.splice(0, state.logQueue.length - LOG_MAX);
    if (state.logTimer === null) state.logTimer = setTimeout(flushLog, 50);
  }

  function flushLog() {
    state.logTimer = null;
    var list = $('log');
    var only = $('log-selected').checked;
    var batch = state.logQueue.reverse();
    state.logQueue = [];
    var frag = document.createDocumentFragment();
    batch.forEach(function (entry) {
      entry.node.hidden = only && entry.vehicleId !== state.selected;
      frag.appendChild(entry.node);
    });
    list.prepend(frag);
    state.log = batch.concat(state.log);
    while (state.log.length > LOG_MAX) state.log.pop().node.remove();
    updateLogCount();
  }

  function applyLogFilter() {
    var only = $('log-selected').checked;
    state.log.forEach(function (entry) { entry.node.hidden = only && entry.vehicleId !== state.selected; });
    updateLogCount();
  }

  function updateLogCount() {
    var shown = state.log.filter(function (e) { return !e.node.hidden; }).length;
    $('log-count').textContent = shown + (shown === 1 ? ' event' : ' events') +
      (state.log.length >= LOG_MAX ? ' (newest ' + LOG_MAX + ' kept)' : '');
  }

  $('log-selected').addEventListener('change', applyLogFilter);
  $('log-clear').addEventListener('click', function () {
    state.log.forEach(function (e) { e.node.remove(); });
    state.log = [];
    updateLogCount();
  });

  // ---- stream events ----

  function onUplink(r) {
    var row = state.rows.get(r.vehicleId);
    if (row && r.seq > row.last) {
      row.last = r.seq;
      row.seq.textContent = String(r.seq);
    }
    if (r.vehicleId === state.selected && state.vehicle) {
      var added = addRecent(r);
      mergeLatest(r);
      if (added) renderVehicle();
    }
    logLine('uplink', r.vehicleId, 'seq ' + r.seq + ' ' + r.kind + ': ' + summarize(r.data), r);
  }

  function onPresence(p) {
    var row = state.rows.get(p.vehicleId);
    if (row) {
      // A reconnect may report the new session online before the old one offline.
      if (p.online) {
        row.session = p.sessionId;
        setBadge(row, true);
      } else if (row.session === null || row.session === p.sessionId) {
        setBadge(row, false);
        // "Online only" lists live sessions: the page is read again without it.
        if ($('online-only').checked) debounce('vehicles', 300, reloadVehicles);
      }
    } else if (p.online && belongsOnPage(p.vehicleId)) {
      debounce('vehicles', 300, reloadVehicles);
    }
    if (p.vehicleId === state.selected) debounce('vehicle', 200, refreshVehicle);
    logLine('presence', p.vehicleId, (p.online ? 'online' : 'offline') + ' (session ' + p.sessionId +
      (p.reason ? ', ' + p.reason : '') + ')', p);
  }

  function onCommand(c) {
    if (state.commands.has(c.id) || c.vehicleId === state.selected) upsertCommand(c);
    logLine('command', c.vehicleId, c.name + ' seq ' + c.seq + ' → ' + c.status +
      (c.result !== null && c.result !== undefined ? ' ' + fmtValue(c.result) : ''), c);
  }

  function dispatch(type, text) {
    var data;
    try { data = JSON.parse(text); } catch (e) { return; }
    if (!data || typeof data !== 'object') return;
    if (type === 'uplink') onUplink(data);
    else if (type === 'presence') onPresence(data);
    else if (type === 'command') onCommand(data);
  }

  /** After (re)connecting the stream, reload what may have changed while it was down. */
  function resync() {
    reloadVehicles();
    if (state.selected !== null) refreshVehicle();
    state.commands.forEach(function (c) { if (rank(c.status) < 2) refreshCommand(c.id); });
  }

  function setStreamState(kind, text) {
    var node = $('stream-state');
    node.className = 'stream-state' + (kind ? ' ' + kind : '');
    node.textContent = text;
  }

  function startStream() {
    stopStream();
    var ctrl = new AbortController();
    state.stream = ctrl;
    runStream(ctrl);
  }

  function stopStream() {
    if (state.stream) state.stream.abort();
    state.stream = null;
  }

  function sleep(ms, signal) {
    return new Promise(function (resolve) {
      var t = setTimeout(resolve, ms);
      signal.addEventListener('abort', function () { clearTimeout(t); resolve(); }, { once: true });
    });
  }

  async function runStream(ctrl) {
    var delay = 1000;
    var opened = false;
    while (!ctrl.signal.aborted) {
      setStreamState('', 'Connecting…');
      var retry = null;
      try {
        var res = await fetch('/api/v1/stream', { cache: 'no-store', signal: ctrl.signal,
          headers: authHeaders({ Accept: 'text/event-stream' }) });
        if (res.status === 401) {
          unauthorized(errorFrom(res, await res.text()));
          return;
        }
        if (!res.ok || !res.body) throw errorFrom(res, await res.text());
        setStreamState('live', 'Live');
        if (opened) logLine('stream', null, 'event stream reconnected');
        opened = true;
        delay = 1000;
        resync();
        retry = await readEvents(res.body, ctrl.signal);
        if (ctrl.signal.aborted) return;
        logLine('stream', null, 'event stream ended; reconnecting');
      } catch (e) {
        if (ctrl.signal.aborted) return;
        logLine('stream', null, 'event stream failed: ' + describe(e) + '; reconnecting');
      }
      setStreamState('down', 'Reconnecting…');
      await sleep(retry !== null ? Math.max(retry, delay) : delay, ctrl.signal);
      delay = Math.min(delay * 2, 30000);
    }
  }

  /** Reads server-sent events until the stream ends; returns the last retry: value (ms) or null. */
  async function readEvents(body, signal) {
    var reader = body.getReader();
    var decoder = new TextDecoder();
    var buffer = '';
    var skipLF = false;
    var type = '';
    var data = [];
    var retry = null;
    var lastByte = Date.now();
    var watchdog = setInterval(function () {
      // No heartbeat for too long: the connection is dead even if no error reached us.
      if (Date.now() - lastByte > STALE_MS) reader.cancel().catch(function () { /* gone already */ });
    }, Math.min(5000, STALE_MS));
    var onAbort = function () { reader.cancel().catch(function () { /* gone already */ }); };
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      for (;;) {
        var chunk = await reader.read();
        if (chunk.done) break;
        lastByte = Date.now();
        var text = decoder.decode(chunk.value, { stream: true });
        if (skipLF && text.charAt(0) === '\n') text = text.slice(1);
        skipLF = text.charAt(text.length - 1) === '\r';
        buffer += text;
        var lines = buffer.split(/\r\n|\r|\n/);
        buffer = lines.pop();
        for (var i = 0; i < lines.length; i++) {
          var line = lines[i];
          if (line === '') {
            if (data.length > 0) dispatch(type || 'message', data.join('\n'));
            type = '';
            data = [];
            continue;
          }
          if (line.charAt(0) === ':') continue;
          var colon = line.indexOf(':');
          var field = colon < 0 ? line : line.slice(0, colon);
          var value = colon < 0 ? '' : line.slice(colon + 1);
          if (value.charAt(0) === ' ') value = value.slice(1);
          if (field === 'event') type = value;
          else if (field === 'data') data.push(value);
          else if (field === 'retry' && /^\d+$/.test(value)) retry = Number(value);
        }
      }
    } finally {
      clearInterval(watchdog);
      signal.removeEventListener('abort', onAbort);
    }
    return retry;
  }

  // ---- start ----

  var saved = storedToken();
  if (saved) signIn(saved);
  else $('token').focus();
})();
`;
