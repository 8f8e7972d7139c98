// Building the pages' DOM: nodes and textContent only (never innerHTML), so job output cannot inject markup.

export const main = document.getElementById('main');

/** h('a', { href: 'x', class: 'y', onclick: fn }, 'text', child...) */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('on')) el.addEventListener(key.slice(2), value);
    else if (key === 'class') el.className = value;
    else if (value === true) el.setAttribute(key, '');
    else el.setAttribute(key, String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** The nodes worth showing: nested lists flattened, the null, undefined and false of conditional parts dropped. */
export function present(nodes, depth = 2) {
  return [nodes].flat(depth + 1).filter((n) => n !== null && n !== undefined && n !== false);
}

/** Replaces the page's content. */
export function show(...nodes) {
  main.replaceChildren(...present(nodes));
}

/** A table that scrolls sideways on a narrow screen instead of overflowing the page. */
export function tableWrap(table) {
  return h('div', { class: 'table-wrap' }, table);
}

/** A table head; a null title is a column left out. */
export function thead(...titles) {
  return h(
    'thead',
    {},
    h(
      'tr',
      {},
      titles.filter((t) => t !== null).map((t) => h('th', {}, t)),
    ),
  );
}

/** A wrapped table: its class, its column titles and one row per item. */
export function table(cls, titles, items, row) {
  return tableWrap(h('table', { class: cls }, thead(...titles), h('tbody', {}, items.map(row))));
}

/** The `dt`/`dd` pairs of a `dl`, one per [term, dd attributes, dd children...]; a null entry is left out. */
export function facts(entries) {
  return entries.filter(Boolean).flatMap(([term, attrs, ...children]) => [h('dt', {}, term), h('dd', attrs, ...children)]);
}

/**
 * A part of a live page that is rebuilt only when its data changed, and not while the reader has text selected in it
 * (the next refresh does it): refreshing never loses the scroll position or a selection.
 */
export class Region {
  constructor(tag = 'section', attrs = {}) {
    this.el = h(tag, attrs);
    this.key = undefined;
  }
  update(data, build) {
    const key = JSON.stringify(data);
    if (key === this.key) return false;
    const selection = document.getSelection();
    if (selection && !selection.isCollapsed && this.el.contains(selection.anchorNode)) return false;
    this.key = key;
    this.el.replaceChildren(...present(build(data), 2));
    return true;
  }
}
