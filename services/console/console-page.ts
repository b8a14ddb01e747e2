// The console page: plain HTML, CSS and a small script, no front-end build step (the page is one
// view of data the daemon already has). The script connects to /events (Server-Sent Events; the
// browser reconnects by itself), fetches the statechart once and lights the state the update
// cycle is in, and asks for a confirmation before any action. No inline script: the page's
// Content-Security-Policy allows only scripts from the daemon itself.

export const CONSOLE_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>boxkeeper console</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="/console.css">
<script src="/console.js" defer></script>
</head>
<body>
<header>
  <h1>boxkeeper</h1>
  <span id="box">box …</span>
  <span id="link" class="link down" title="live connection to the daemon">connecting…</span>
</header>
<main>
  <section id="update-panel">
    <h2>Update</h2>
    <dl>
      <dt>state</dt><dd id="state">…</dd>
      <dt>phase</dt><dd id="phase">…</dd>
      <dt>last result</dt><dd id="result">–</dd>
      <dt>last error</dt><dd id="error">–</dd>
      <dt>next check</dt><dd id="next-check">–</dd>
      <dt>snapshot</dt><dd id="snapshot">–</dd>
    </dl>
    <table id="versions">
      <thead><tr><th>version</th><th>status</th><th>step</th><th>download</th></tr></thead>
      <tbody></tbody>
    </table>
    <div id="actions">
      <button data-action="check">Check for updates</button>
      <button data-action="install">Install</button>
      <button data-action="rollback">Roll back</button>
      <button data-action="clear-cache">Clear cache</button>
    </div>
    <div id="confirm" hidden>
      <span id="confirm-text"></span>
      <button id="confirm-yes">Confirm</button>
      <button id="confirm-no">Cancel</button>
    </div>
    <p id="action-result" role="status"></p>
  </section>
  <section id="services-panel">
    <h2>Services</h2>
    <table id="services">
      <thead><tr><th>service</th><th>status</th><th>pid</th><th>restarts</th><th>failures</th><th>since</th><th>last error</th></tr></thead>
      <tbody></tbody>
    </table>
    <h2>Heartbeats</h2>
    <p id="heartbeats">…</p>
  </section>
  <section id="chart-panel">
    <h2>Update statechart <small>(the lit state is where the cycle is)</small></h2>
    <div id="chart">loading…</div>
  </section>
  <section id="log-panel">
    <h2>Recent log</h2>
    <ol id="log"></ol>
  </section>
</main>
</body>
</html>
`;

export const CONSOLE_CSS = `
body { font: 14px/1.4 system-ui, sans-serif; margin: 0; color: #1d2733; background: #f4f6fa; }
header { display: flex; gap: 1em; align-items: baseline; padding: .6em 1em; background: #26354a; color: #fff; }
header h1 { font-size: 1.2em; margin: 0; }
.link { margin-left: auto; padding: .1em .6em; border-radius: 1em; font-size: .85em; }
.link.up { background: #2e7d32; } .link.down { background: #c62828; }
main { display: grid; grid-template-columns: minmax(28em, 1fr) minmax(28em, 1fr); gap: 1em; padding: 1em; }
section { background: #fff; border: 1px solid #d5dbe5; border-radius: 6px; padding: .6em 1em; overflow: auto; }
#chart-panel, #log-panel { grid-column: 1 / 3; }
h2 { font-size: 1em; margin: .4em 0; }
dl { display: grid; grid-template-columns: 8em 1fr; margin: 0; } dt { color: #5b6b80; } dd { margin: 0; }
#state { font-weight: bold; font-family: ui-monospace, monospace; }
table { border-collapse: collapse; width: 100%; margin: .4em 0; }
th, td { text-align: left; padding: .15em .5em; border-bottom: 1px solid #e6e9ef; font-size: .92em; }
.bar { display: inline-block; width: 8em; height: .7em; background: #e6e9ef; border-radius: .35em; overflow: hidden; vertical-align: middle; }
.bar > i { display: block; height: 100%; background: #1e88e5; }
.st-running { color: #2e7d32; } .st-crash-loop, .st-not-startable, .st-backoff { color: #c62828; }
#actions button, #confirm button { margin: .3em .3em 0 0; }
#confirm { margin-top: .4em; padding: .4em; background: #fff8e1; border: 1px solid #ffcc80; }
#chart { max-height: 75vh; overflow: auto; }
#chart .lit > path, #chart .lit > polygon, #chart .lit > ellipse { fill: #ffe082; stroke: #e65100; stroke-width: 3px; }
#log { font: 12px/1.35 ui-monospace, monospace; max-height: 22em; overflow: auto; margin: 0; padding-left: 0; list-style: none; }
#log li.warn { color: #9a6700; } #log li.error, #log li.fatal { color: #c62828; }
`;

export const CONSOLE_JS = `'use strict';
(function () {
  var $ = function (id) { return document.getElementById(id); };
  var text = function (id, v) { $(id).textContent = v === null || v === undefined || v === '' ? '\\u2013' : String(v); };
  var litState = null;
  var chartReady = false;

  function el(tag, cls, content) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (content !== undefined) e.textContent = content;
    return e;
  }
  function mb(n) { return n < 1048576 ? (n / 1024).toFixed(1) + ' KB' : (n / 1048576).toFixed(1) + ' MB'; }

  // The chart's nodes are titled update.<path> and its compound states cluster_update.<path>.
  function light(state) {
    litState = state;
    if (!chartReady) return;
    var svg = $('chart');
    svg.querySelectorAll('.lit').forEach(function (g) { g.classList.remove('lit'); });
    if (!state) return;
    var parts = state.split('.');
    var wanted = {};
    for (var i = 1; i <= parts.length; i++) {
      var path = 'update.' + parts.slice(0, i).join('.');
      wanted[path] = true;
      wanted['cluster_' + path] = true;
    }
    var leaf = null;
    svg.querySelectorAll('g.node, g.cluster').forEach(function (g) {
      var t = g.querySelector('title');
      if (t && wanted[t.textContent]) {
        g.classList.add('lit');
        if (g.classList.contains('node')) leaf = g;
      }
    });
    // The chart is drawn at its own size: scroll its box (not the page) to the lit state.
    if (leaf) {
      var box = svg.getBoundingClientRect();
      var at = leaf.getBoundingClientRect();
      svg.scrollTop += at.top - box.top - svg.clientHeight / 2 + at.height / 2;
      svg.scrollLeft += at.left - box.left - svg.clientWidth / 2 + at.width / 2;
    }
  }

  function renderUpdate(u) {
    var body = $('versions').tBodies[0];
    body.textContent = '';
    if (!u) { text('state', 'update cycle off'); return; }
    text('state', u.state);
    text('phase', u.phase + (u.parked ? ' (parked: ' + u.parked.reason + ')' : ''));
    text('result', u.lastResult);
    text('error', u.lastError);
    text('next-check', u.nextCheckAt);
    text('snapshot', u.snapshot ? u.snapshot.snapshot + ': ' + u.snapshot.done + ' of ' + u.snapshot.total + ' changed files ' + u.snapshot.verb : null);
    u.versions.forEach(function (v) {
      var tr = el('tr');
      tr.appendChild(el('td', '', v.versionNum));
      tr.appendChild(el('td', '', v.status));
      tr.appendChild(el('td', '', v.state + (v.lastError ? ' \\u2013 ' + v.lastError : '')));
      var cell = el('td');
      var p = v.progress;
      if (p && p.total > 0) {
        var bar = el('span', 'bar');
        var fill = el('i');
        fill.style.width = Math.round((p.done / p.total) * 100) + '%';
        bar.appendChild(fill);
        cell.appendChild(bar);
        var label = p.totalBytes ? mb(p.bytes || 0) + ' of ' + mb(p.totalBytes) : '';
        cell.appendChild(document.createTextNode(' ' + label + ' (' + p.done + '/' + p.total + ' chunks)'));
      }
      var x = v.extraction;
      if (x && x.totalBytes > 0) {
        cell.appendChild(document.createTextNode(x.bytes < x.totalBytes
          ? ' \u00b7 extracting ' + mb(x.bytes) + ' of ' + mb(x.totalBytes)
          : ' \u00b7 extracted'));
      }
      if (!p && (v.status === 'DOWNLOADED' || v.status === 'FINISHED')) {
        cell.textContent = 'complete';
      }
      tr.appendChild(cell);
      body.appendChild(tr);
    });
    light(u.state);
  }

  function renderServices(s) {
    var body = $('services').tBodies[0];
    body.textContent = '';
    ['java', 'freeswitch'].forEach(function (name) {
      var v = s[name];
      var tr = el('tr');
      tr.dataset.service = name;
      tr.appendChild(el('td', '', name));
      tr.appendChild(el('td', v ? 'st-' + v.status : '', v ? v.status : 'not supervised'));
      tr.appendChild(el('td', '', v && v.pid !== null ? String(v.pid) : '\\u2013'));
      tr.appendChild(el('td', '', v ? String(v.restarts || 0) : '\\u2013'));
      tr.appendChild(el('td', '', v ? String(v.failures) : '\\u2013'));
      tr.appendChild(el('td', '', v ? v.since : '\\u2013'));
      tr.appendChild(el('td', '', v && v.lastError ? v.lastError : '\\u2013'));
      body.appendChild(tr);
    });
  }

  function render(st) {
    $('box').textContent = 'box ' + (st.box.code || '?') + ' \\u00b7 ' + (st.box.version || '?') +
      ' \\u00b7 agent ' + st.agentVersion + ' (pid ' + st.pid + ')' + (st.debugMode ? ' \\u00b7 debug mode' : '');
    renderUpdate(st.update);
    renderServices(st.services);
    var h = st.heartbeat;
    var last = h.last ? (h.last.ok ? 'last ok at ' + h.last.at : 'last failed at ' + h.last.at + ': ' + h.last.error) : 'none yet';
    $('heartbeats').textContent = h.sent + ' sent, ' + h.failed + ' failed; ' + last;
  }

  function addLog(line) {
    var list = $('log');
    var li = el('li', line.level, line.time + ' ' + line.level.toUpperCase() + ' ' + line.text);
    list.appendChild(li);
    while (list.children.length > 200) list.removeChild(list.firstChild);
    list.scrollTop = list.scrollHeight;
  }

  function connect() {
    var events = new EventSource('/events');
    events.addEventListener('open', function () { $('link').className = 'link up'; $('link').textContent = 'live'; });
    events.addEventListener('error', function () { $('link').className = 'link down'; $('link').textContent = 'reconnecting\\u2026'; });
    events.addEventListener('status', function (e) { render(JSON.parse(e.data)); });
    events.addEventListener('logs', function (e) { $('log').textContent = ''; JSON.parse(e.data).forEach(addLog); });
    events.addEventListener('log', function (e) { addLog(JSON.parse(e.data)); });
  }

  var QUESTIONS = {
    check: 'Ask the cloud for updates now?',
    install: 'Install the downloaded update now? Java and FreeSWITCH restart, calls in progress are waited for.',
    rollback: 'Roll the box back to the snapshot taken before the last update?',
    'clear-cache': 'Delete the downloaded patches and the update state?'
  };
  var pending = null;

  function ask(action) {
    pending = action;
    $('confirm-text').textContent = QUESTIONS[action];
    $('confirm').hidden = false;
  }
  function act() {
    var action = pending;
    pending = null;
    $('confirm').hidden = true;
    text('action-result', action + '\\u2026');
    fetch('/api/action', {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-boxkeeper-console': '1' },
      body: JSON.stringify({ action: action })
    }).then(function (r) {
      return r.json().then(function (b) {
        if (r.ok && b.accepted) text('action-result', action + ': accepted');
        else text('action-result', action + ': refused' + (b.error ? ' (' + b.error + ')' : b.status ? ' (the cycle is ' + b.status.state + ')' : ''));
      });
    }).catch(function (err) { text('action-result', action + ': ' + err); });
  }

  document.addEventListener('DOMContentLoaded', function () {
    document.querySelectorAll('#actions button').forEach(function (b) {
      b.addEventListener('click', function () { ask(b.dataset.action); });
    });
    $('confirm-yes').addEventListener('click', act);
    $('confirm-no').addEventListener('click', function () { pending = null; $('confirm').hidden = true; });
    fetch('/chart.svg').then(function (r) {
      if (!r.ok) throw new Error('HTTP ' + r.status);
      return r.text();
    }).then(function (svg) {
      var doc = new DOMParser().parseFromString(svg, 'image/svg+xml');
      $('chart').textContent = '';
      $('chart').appendChild(document.importNode(doc.documentElement, true));
      chartReady = true;
      light(litState);
    }).catch(function (err) { $('chart').textContent = 'the chart could not be drawn: ' + err; });
    connect();
  });
})();
`;
