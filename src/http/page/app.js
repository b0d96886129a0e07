// inboxd status page: live relative times, auto-submit of the status filter, optional
// auto-refresh. Plain JavaScript, no build step; the page works without it.
'use strict';
(function () {
  function relative(ms) {
    var secs = Math.round(ms / 1000);
    var abs = Math.abs(secs);
    if (abs < 2) { return 'now'; }
    var amount;
    if (abs < 120) { amount = abs + ' s'; }
    else if (abs < 7200) { amount = Math.floor(abs / 60) + ' min'; }
    else if (abs < 172800) { amount = Math.floor(abs / 3600) + ' h'; }
    else { amount = Math.floor(abs / 86400) + ' days'; }
    return secs > 0 ? 'in ' + amount : amount + ' ago';
  }

  function tick() {
    var times = document.querySelectorAll('time[data-rel]');
    for (var i = 0; i < times.length; i++) {
      var at = Date.parse(times[i].getAttribute('datetime'));
      if (!isNaN(at)) { times[i].textContent = relative(at - Date.now()); }
    }
  }
  setInterval(tick, 1000);

  var filter = document.getElementById('filter');
  var status = document.getElementById('filter-status');
  if (filter && status) {
    status.addEventListener('change', function () { filter.submit(); });
  }

  var box = document.getElementById('autorefresh');
  if (box) {
    var key = 'inboxd.autorefresh';
    try { box.checked = window.localStorage.getItem(key) === '1'; } catch (e) { box.checked = false; }
    box.addEventListener('change', function () {
      try { window.localStorage.setItem(key, box.checked ? '1' : '0'); } catch (e) { /* private mode */ }
    });
    setInterval(function () {
      var active = document.activeElement;
      var typing = active && /^(INPUT|SELECT|TEXTAREA)$/.test(active.tagName) && active !== box;
      // Never throw away what someone is typing into an open form.
      var filled = false;
      var inputs = document.querySelectorAll('details[open] input:not([type=hidden])');
      for (var i = 0; i < inputs.length; i++) { if (inputs[i].value) { filled = true; } }
      if (box.checked && !typing && !filled) { window.location.reload(); }
    }, 10000);
  }
})();
