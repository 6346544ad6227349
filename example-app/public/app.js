// Small client helpers for the demo. No framework: htmx does the rest.
(function () {
  'use strict';

  // Connection state of each live section (sse-connect), shown by the CSS as a pill.
  function setState(evt, state) {
    if (evt.target && evt.target.setAttribute) evt.target.setAttribute('data-sse', state);
  }
  document.addEventListener('htmx:sseOpen', function (evt) {
    setState(evt, 'open');
  });
  document.addEventListener('htmx:sseError', function (evt) {
    setState(evt, 'reconnecting');
  });
  document.addEventListener('htmx:sseClose', function (evt) {
    setState(evt, 'closed');
  });

  // A fragment prepended or appended to a list is skipped when an element with its
  // id is already on the page: a page that resumes from the moment it was rendered
  // may be sent an event it already shows.
  document.addEventListener('htmx:sseBeforeMessage', function (evt) {
    var swap = evt.target.getAttribute('hx-swap') || '';
    if (swap.indexOf('afterbegin') === -1 && swap.indexOf('beforeend') === -1) return;
    var data = evt.detail && evt.detail.data;
    if (typeof data !== 'string') return;
    var tpl = document.createElement('template');
    tpl.innerHTML = data;
    var first = tpl.content.firstElementChild;
    if (first && first.id && document.getElementById(first.id)) evt.preventDefault();
  });

  // Clear a form after htmx posted it successfully.
  document.addEventListener('htmx:afterRequest', function (evt) {
    var form = evt.target;
    var xhr = evt.detail && evt.detail.xhr;
    if (form.matches && form.matches('form[data-reset-on-success]') && xhr && xhr.status >= 200 && xhr.status < 300) {
      var keep = form.querySelector('select') ? form.querySelector('select').value : null;
      form.reset();
      if (keep !== null) form.querySelector('select').value = keep;
    }
  });
})();
