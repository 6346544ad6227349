// @ts-check
'use strict';

/**
 * A tiny HTML template helper: every interpolated value is HTML-escaped unless
 * it is already a SafeHtml (the result of html`` or raw()). Arrays are joined.
 * null, undefined and false render as nothing.
 *
 *   html`<li>${userText}</li>`   // userText is escaped
 */

class SafeHtml {
  /** @param {string} value */
  constructor(value) {
    this.value = value;
  }

  toString() {
    return this.value;
  }
}

const ESCAPES = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

/** Escapes text for use in HTML content and in quoted attribute values. */
function escapeHtml(value) {
  return String(value).replace(/[&<>"']/g, (c) => ESCAPES[c]);
}

function render(value) {
  if (value === null || value === undefined || value === false) return '';
  if (value instanceof SafeHtml) return value.value;
  if (Array.isArray(value)) return value.map(render).join('');
  return escapeHtml(value);
}

/** Tagged template: escapes every interpolation, returns SafeHtml. */
function html(strings, ...values) {
  let out = strings[0];
  for (let i = 0; i < values.length; i++) out += render(values[i]) + strings[i + 1];
  return new SafeHtml(out);
}

/** Marks a string as trusted HTML. Never pass user input here. */
function raw(text) {
  return new SafeHtml(String(text));
}

module.exports = { html, raw, escapeHtml, SafeHtml };
