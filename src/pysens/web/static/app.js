/* The live page of `sens web`: one Server-Sent Events stream (/api/stream) brings the whole
   picture (snapshot) and then what each event changed (change); the page keeps its tables and
   the timeline (timeline.js) in step. Read-only: nothing is ever sent back but GETs. Every
   name, host and client string goes in with textContent, never as markup. The address's hash
   keeps the view (host, filter, zoom) so that it can be shared. */
(function () {
  'use strict';
  var $ = function (id) { return document.getElementById(id); };
  var TL = window.SensTimeline;
  var MAX_EVENTS = 300;
  var NET = {ConnectionMade: 1, ConnectionMadeNoQOCInfo: 1, ConnectionLost: 1,
    DestinationReachable: 1, DestinationReachableNoQOCInfo: 1};
  var POWER = {OnACPower: 1, OnBatteryPower: 1, BatteryLow: 1};

  var view = readHash();
  var rows = {};          // session id -> {r: row, tr: element}
  var order = [];         // rows in table order
  var hosts = {};         // host -> summary
  var mode = 'local';
  var offset = 0;         // server clock - this clock (seconds)
  var source = null;
  var firstSnapshot = true;
  var sourceOk = true;

  var tl = new TL.Timeline($('tl'), {
    live: true, scroller: $('tlscroll'), axisHolder: $('axishold'),
    emptyText: 'No sessions in the window yet.',
    onView: function (lo, hi, zoomed) { view.zoom = zoomed ? [lo, hi] : null; writeHash(); }
  });

  function readHash() {
    var p = new URLSearchParams(location.hash.replace(/^#/, '')), z = (p.get('zoom') || '').split(',');
    return {host: p.get('host') || null, filter: p.get('filter') || '',
      zoom: z.length === 2 && +z[1] > +z[0] ? [+z[0], +z[1]] : null};
  }
  function writeHash() {
    var p = new URLSearchParams();
    if (view.host) { p.set('host', view.host); }
    if (view.filter) { p.set('filter', view.filter); }
    if (view.zoom) { p.set('zoom', view.zoom[0].toFixed(0) + ',' + view.zoom[1].toFixed(0)); }
    var h = p.toString();
    try { history.replaceState(null, '', h ? '#' + h : location.pathname + location.search); }
    catch (e) { /* nothing to keep then */ }
  }

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) { e.className = cls; }
    if (text !== undefined && text !== null) { e.textContent = String(text); }
    return e;
  }
  function clock(s) { return s ? s.slice(0, 10) + ' ' + s.slice(11, 19) : '-'; }
  function hms(s) { return s ? s.slice(11, 23) : '-'; }

  /* -- the status line ------------------------------------------------------------------ */

  function status(ok, message) {
    var s = $('status');
    s.hidden = ok;
    s.className = 'status' + (ok ? '' : ' down');
    s.textContent = ok ? '' : message;
    document.body.setAttribute('data-source', ok ? 'up' : 'down');
  }

  /* -- open sessions ------------------------------------------------------------------ */

  /* host, then since, then session id: no arrays built per comparison (a snapshot sorts
     ten thousand rows) */
  function before(a, b) {
    if (a.host !== b.host) { return a.host < b.host; }
    if (a.since !== b.since) { return a.since < b.since; }
    var x = a.session_id || '', y = b.session_id || '';
    return x !== y && x < y;
  }
  function drawRow(r) {
    var tr = el('tr');
    tr.setAttribute('data-id', r.id);
    tr.setAttribute('data-state', r.state);
    tr.appendChild(el('td', 'host', r.host));
    tr.appendChild(el('td', 'user', r.domain ? r.domain + '\\' + r.user_name : r.user_name));
    tr.appendChild(el('td', 'sid', r.session_id));
    var st = el('td'), badge = el('span', 'state ' + r.state, r.state);
    st.appendChild(badge);
    tr.appendChild(st);
    tr.appendChild(el('td', 'since', clock(r.since)));
    tr.appendChild(el('td', 'client', r.client_name || (r.remote ? '' : 'local')));
    tr.appendChild(el('td', 'addr', r.client_address || ''));
    return tr;
  }
  /* At most CAP rows are in the page (a table of ten thousand takes the browser seconds to
     lay out, and nobody reads it): the first CAP in order, then a line saying how many more,
     with a button to show them all. A host picked in the overview narrows the table first. */
  var CAP = 500, showAll = false;
  function shown(r) { return !view.host || r.host === view.host; }
  function shownOrder() { return view.host ? order.filter(shown) : order; }
  function limit() { return showAll ? Infinity : CAP; }
  function setRows(list) {
    rows = {};
    order = list.slice().sort(function (a, b) { return before(a, b) ? -1 : before(b, a) ? 1 : 0; });
    order.forEach(function (r) { rows[r.id] = {r: r, tr: null}; });
  }
  function renderRows() {
    var body = $('sessions').tBodies[0], frag = document.createDocumentFragment(), list = shownOrder();
    order.forEach(function (r) { rows[r.id].tr = null; });
    list.slice(0, limit()).forEach(function (r) { var tr = drawRow(r); rows[r.id].tr = tr; frag.appendChild(tr); });
    body.textContent = '';
    body.appendChild(frag);
    footer(list.length);
    countRows();
  }
  function footer(total) {
    var foot = $('sessions').tFoot || $('sessions').createTFoot(), more = total - Math.min(total, limit());
    foot.textContent = '';
    if (more <= 0) { return; }
    var tr = el('tr', 'more'), td = el('td', null, '\u2026 and ' + more + ' more session(s) ');
    td.colSpan = 7;
    var b = el('button', null, 'show all');
    b.type = 'button';
    b.addEventListener('click', function () { showAll = true; renderRows(); });
    td.appendChild(b);
    tr.appendChild(td);
    foot.appendChild(tr);
  }
  function upsertRow(r) {
    var body = $('sessions').tBodies[0], old = rows[r.id], tr = drawRow(r);
    tr.className = 'flash';
    if (old) {
      order[order.indexOf(old.r)] = r;
      rows[r.id] = {r: r, tr: old.tr ? tr : null};
      if (old.tr) { body.replaceChild(tr, old.tr); }
      countRows();
      return;
    }
    var lo = 0, hi = order.length;
    while (lo < hi) { var mid = (lo + hi) >> 1; if (before(order[mid], r)) { lo = mid + 1; } else { hi = mid; } }
    order.splice(lo, 0, r);
    rows[r.id] = {r: r, tr: null};
    if (shown(r)) {
      var list = shownOrder(), at = list.indexOf(r);
      if (at < limit()) {
        var next = list[at + 1];
        body.insertBefore(tr, next && rows[next.id].tr ? rows[next.id].tr : null);
        rows[r.id].tr = tr;
        var cut = list[limit()];  // one too many in the page now
        if (cut && rows[cut.id].tr) { body.removeChild(rows[cut.id].tr); rows[cut.id].tr = null; }
      }
      footer(list.length);
    }
    countRows();
  }
  function removeRow(id) {
    var old = rows[id], body = $('sessions').tBodies[0];
    if (!old) { return; }
    order.splice(order.indexOf(old.r), 1);
    delete rows[id];
    if (old.tr) {
      body.removeChild(old.tr);
      var list = shownOrder(), last = list[limit() - 1];  // the next one moves up into the page
      if (last && !rows[last.id].tr) { var tr = drawRow(last); rows[last.id].tr = tr; body.appendChild(tr); }
    }
    if (shown(old.r)) { footer(shownOrder().length); }
    countRows();
  }
  function countRows() {
    var n = 0, d = 0;
    order.forEach(function (r) {
      if (!view.host || r.host === view.host) { n++; if (r.state === 'disconnected') { d++; } }
    });
    $('count').textContent = n + ' open' + (d ? ', ' + d + ' disconnected' : '');
  }

  /* -- the event stream ------------------------------------------------------------------ */

  function drawEvent(e) {
    var li = el('li'), m = String(e.method);
    li.setAttribute('data-method', m);
    li.hidden = !!(view.host && e.host !== view.host);
    li.appendChild(el('span', 't', hms(e.time)));
    li.appendChild(el('span', 'h', e.host));
    li.appendChild(el('span', 'm ' + (NET[m] ? 'net' : POWER[m] ? 'power' : m), m));
    var who = e.user_name ? (e.domain ? e.domain + '\\' : '') + e.user_name : '';
    var extra = [];
    if (who) { extra.push(who); }
    if (e.session_id) { extra.push('session ' + e.session_id); }
    if (e.client_address || e.client_name) { extra.push('from ' + (e.client_name || '') + (e.client_address ? ' ' + e.client_address : '')); }
    if (e.connection) { extra.push(e.connection + (e.connection_type === 1 ? ' (WAN)' : ' (LAN)')); }
    if (e.destination) { extra.push(e.destination); }
    if (e.battery_percent !== null && e.battery_percent !== undefined) { extra.push(e.battery_percent + '%'); }
    if (e.reason) { extra.push('(' + e.reason + ')'); }
    li.appendChild(el('span', 'x', extra.join(' \u00b7 ')));
    return li;
  }
  function setEvents(list) {
    var ol = $('events'), frag = document.createDocumentFragment();
    list.slice(-MAX_EVENTS).reverse().forEach(function (e) { frag.appendChild(drawEvent(e)); });
    ol.textContent = '';
    ol.appendChild(frag);
    $('evcount').textContent = view.filter ? 'filtered' : '';
  }
  function addEvent(e) {
    var ol = $('events'), li = drawEvent(e);
    li.className = 'new';
    ol.insertBefore(li, ol.firstChild);
    while (ol.children.length > MAX_EVENTS) { ol.removeChild(ol.lastChild); }
  }

  /* -- hosts (the fleet overview) ------------------------------------------------------ */

  var overviewPending = false;
  function drawOverview() {
    overviewPending = false;
    if (mode !== 'fleet') { return; }
    var body = $('overview').tBodies[0], names = Object.keys(hosts).sort(), frag = document.createDocumentFragment();
    names.forEach(function (name) {
      var h = hosts[name], tr = el('tr'), a = el('td');
      tr.setAttribute('data-host', name);
      if (view.host === name) { tr.className = 'picked'; }
      a.appendChild(el('span', 'hostlink', name));
      tr.appendChild(a);
      tr.appendChild(el('td', 'open', h.open));
      tr.appendChild(el('td', 'disc', h.disconnected));
      tr.appendChild(el('td', 'locked', h.locked));
      tr.appendChild(el('td', 'last', h.last ? clock(h.last.time) + ' ' + h.last.method +
        (h.last.user_name ? ' ' + h.last.user_name : '') : '-'));
      tr.addEventListener('click', function () { pickHost(name); });
      frag.appendChild(tr);
    });
    body.textContent = '';
    body.appendChild(frag);
    $('hostcount').textContent = names.length + ' host(s)';
  }
  function overviewSoon() {
    if (!overviewPending) { overviewPending = true; requestAnimationFrame(drawOverview); }
  }

  function pickHost(name) {
    view.host = name || null;
    writeHash();
    applyHost();
  }
  /* The picked host (or none) on every part of the page; the timeline too unless its data
     was just set for that host (a snapshot: laying ten thousand rows out twice is what made
     the first picture slow). */
  function applyHost(timelineDone) {
    $('hostsel').hidden = !view.host;
    $('hostname').textContent = view.host || '';
    renderRows();
    var lis = $('events').children;
    for (var i = 0; i < lis.length; i++) {
      var h = lis[i].children[1].textContent;
      lis[i].hidden = !!(view.host && h !== view.host);
    }
    if (!timelineDone) { tl.setHost(view.host); }
    drawOverview();
  }
  $('allhosts').addEventListener('click', function () { pickHost(null); });

  /* -- the filter ---------------------------------------------------------------------- */

  function showFilterError(text, err) {
    var pre = $('filter-error'), pos = Math.max(0, Math.min(err.position || 0, text.length));
    pre.hidden = false;
    pre.setAttribute('data-position', String(pos));
    pre.textContent = text + '\n' + new Array(pos + 1).join(' ') + '^ ' + err.error;
    $('filter').classList.add('bad');
  }
  function clearFilterError() {
    $('filter-error').hidden = true;
    $('filter-error').textContent = '';
    $('filter').classList.remove('bad');
  }
  function applyFilter(text) {
    fetch('/api/check?filter=' + encodeURIComponent(text), {credentials: 'same-origin'})
      .then(function (r) { return r.json(); })
      .then(function (v) {
        if (!v.ok) { showFilterError(text, v); return; }
        clearFilterError();
        view.filter = text.trim();
        writeHash();
        connect();
      })
      .catch(function () { status(false, 'cannot reach sens web to check the filter'); });
  }
  $('filter-form').addEventListener('submit', function (ev) { ev.preventDefault(); applyFilter($('filter').value); });
  $('clearfilter').addEventListener('click', function () { $('filter').value = ''; applyFilter(''); });

  /* -- the timeline tools ---------------------------------------------------------------- */

  $('zin').addEventListener('click', function () { tl.zoomBy(0.5); });
  $('zout').addEventListener('click', function () { tl.zoomBy(2); });
  $('panl').addEventListener('click', function () { tl.panBy(-0.25); });
  $('panr').addEventListener('click', function () { tl.panBy(0.25); });

  /* -- the stream ---------------------------------------------------------------------- */

  function onSnapshot(msg) {
    var got = performance.now(), d = JSON.parse(msg.data);
    if (!window.sensSnapshotMs) { window.sensSnapshotMs = [got, performance.now()]; }  // the bench splits the load
    mode = d.mode;
    $('title').textContent = d.title;
    document.title = 'pysens live: ' + d.title;
    $('overview-panel').hidden = mode !== 'fleet';
    sourceOk = d.status.ok;
    status(d.status.ok, d.status.message);
    hosts = {};
    d.hosts.forEach(function (h) { hosts[h.host] = h; });
    setRows(d.sessions);
    setEvents(d.events);
    tl.now = tl.openEnd = Date.now() / 1000 + offset;
    tl.host = view.host || null;  // laid out once, for the host in the URL
    tl.setData(d.spans, d.lanes);
    if (firstSnapshot && view.zoom) { tl.setView(view.zoom[0], view.zoom[1], true); }
    firstSnapshot = false;
    applyHost(true);
    if (!window.sensReadyMs) { window.sensReadyMs = performance.now(); }  // benchmarks read it
    document.body.setAttribute('data-ready', '1');
  }
  function onChange(msg) {
    var d = JSON.parse(msg.data);
    if (d.e) { addEvent(d.e); }
    d.s.forEach(upsertRow);
    d.r.forEach(removeRow);
    if (d.p.length || d.l) { tl.now = tl.openEnd = Date.now() / 1000 + offset; }
    if (d.p.length) { tl.upsert(d.p); }
    if (d.l) { tl.addLane(d.l); }
    if (d.h) { hosts[d.h.host] = d.h; overviewSoon(); }
  }
  function connect() {
    if (source) { source.close(); }
    var url = '/api/stream' + (view.filter ? '?filter=' + encodeURIComponent(view.filter) : '');
    source = new EventSource(url);
    source.addEventListener('clock', function (msg) {
      offset = TL.parseT(JSON.parse(msg.data).now) - Date.now() / 1000;
    });
    source.addEventListener('snapshot', onSnapshot);
    source.addEventListener('change', onChange);
    source.addEventListener('status', function (msg) {
      var s = JSON.parse(msg.data);
      sourceOk = s.ok;
      status(s.ok, s.message);
    });
    source.addEventListener('behind', function (msg) {
      status(false, JSON.parse(msg.data).message);
    });
    source.onopen = function () { if (sourceOk) { status(true, ''); } };
    source.onerror = function () {
      status(false, 'lost the connection to sens web; reconnecting');
      if (source.readyState === 2) { setTimeout(connect, 2000); }  // refused: try again later
    };
  }

  // The clock moves: open bars grow (once a second, and not while the tab is hidden).
  setInterval(function () {
    if (!document.hidden) { tl.setNow(Date.now() / 1000 + offset); }
  }, 1000);

  $('filter').value = view.filter;
  if (view.filter) { applyFilter(view.filter); } else { connect(); }
})();
