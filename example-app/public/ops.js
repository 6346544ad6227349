// The operations page: live figures and a one-minute chart from the `metrics`
// events of the admin-only channel ops:metrics. No framework, no inline script
// (the CSP allows scripts from 'self' only); the chart is inline SVG.
(function () {
  'use strict';

  var section = document.getElementById('ops');
  if (!section) return;
  var instance = section.getAttribute('data-instance');
  var POINTS = 60;
  var W = 600;
  var H = 160;
  var series = { connections: [], publishRate: [] };
  var keys = ['connections', 'channels', 'publishRate', 'deliveryRate', 'dropped', 'resets'];

  function draw() {
    var max = 1;
    Object.keys(series).forEach(function (k) {
      series[k].forEach(function (v) {
        if (v > max) max = v;
      });
    });
    Object.keys(series).forEach(function (k) {
      var line = document.getElementById('ops-line-' + k);
      if (!line) return;
      var values = series[k];
      var step = W / (POINTS - 1);
      var offset = POINTS - values.length;
      var points = values.map(function (v, i) {
        return ((offset + i) * step).toFixed(1) + ',' + (H - 4 - (v / max) * (H - 8)).toFixed(1);
      });
      line.setAttribute('points', points.join(' '));
    });
    var label = document.getElementById('ops-max');
    if (label) label.textContent = 'top = ' + max;
  }

  var es = new EventSource(section.getAttribute('data-events'));
  es.onopen = function () {
    section.setAttribute('data-sse', 'open');
  };
  es.onerror = function () {
    section.setAttribute('data-sse', es.readyState === EventSource.CLOSED ? 'closed' : 'reconnecting');
  };
  es.addEventListener('metrics', function (e) {
    var f;
    try {
      f = JSON.parse(e.data);
    } catch (err) {
      return;
    }
    if (!f || f.instance !== instance) return; // another instance on the same Redis
    keys.forEach(function (k) {
      var dd = document.getElementById('ops-' + k);
      if (dd && typeof f[k] === 'number') dd.textContent = String(f[k]);
    });
    Object.keys(series).forEach(function (k) {
      series[k].push(typeof f[k] === 'number' ? f[k] : 0);
      if (series[k].length > POINTS) series[k].shift();
    });
    draw();
    section.setAttribute('data-updated', String(f.at));
  });
})();
