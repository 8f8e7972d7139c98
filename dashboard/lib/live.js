// Pages that refresh themselves, and how they show a failed request.
import { ApiError } from './api.js';
import { h, show } from './dom.js';

export function failure(err) {
  return h('p', { class: 'error', role: 'alert' }, err instanceof ApiError ? `${err.status}: ${err.message}` : String(err));
}

/** Calls `render` now and every `ms` while `again()` holds; a failed refresh shows the error and keeps trying. */
export async function poll(render, ms, again = () => true) {
  try {
    await render();
  } catch (err) {
    show(failure(err));
  }
  if (again()) setTimeout(() => poll(render, ms, again), ms);
}

/** Calls `tick` now and then every `ms` (a failed refresh shows its error in `errorEl` and keeps going). */
export function every(ms, tick, errorEl) {
  let stopped = false;
  const loop = async () => {
    try {
      await tick();
      if (errorEl) errorEl.replaceChildren();
    } catch (err) {
      if (errorEl) errorEl.replaceChildren(failure(err));
    }
    if (!stopped) setTimeout(loop, typeof ms === 'function' ? ms() : ms);
  };
  loop();
  return () => (stopped = true);
}

/** `every`, first called after one interval (the page has just been drawn). */
export function everyAfter(ms, tick, errorEl) {
  setTimeout(() => every(ms, tick, errorEl), typeof ms === 'function' ? ms() : ms);
}
