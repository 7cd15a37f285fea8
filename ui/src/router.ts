// Client-side routing over the History API. Links are plain <a href>: a
// click on a same-origin link is routed here; shift/ctrl-click still opens
// a new tab.
import { useEffect, useState } from 'preact/hooks';
import { Store } from './store';

export interface Loc {
  path: string;
  query: URLSearchParams;
}

function current(): Loc {
  return { path: location.pathname, query: new URLSearchParams(location.search) };
}

export const route = new Store<Loc>(current());

export function navigate(url: string, replace = false) {
  if (url === location.pathname + location.search) return;
  if (replace) history.replaceState(null, '', url);
  else history.pushState(null, '', url);
  route.set(current());
}

/** Changes some query parameters of the current URL, without a history entry. */
export function setQuery(changes: Record<string, string | null | undefined>, push = false) {
  const q = new URLSearchParams(location.search);
  for (const [k, v] of Object.entries(changes)) {
    if (v === null || v === undefined || v === '') q.delete(k);
    else q.set(k, v);
  }
  const s = q.toString();
  navigate(location.pathname + (s ? '?' + s : ''), !push);
}

/** The range and refresh carry over from page to page. */
export function href(path: string, params: Record<string, string | undefined> = {}): string {
  const cur = new URLSearchParams(location.search);
  const q = new URLSearchParams();
  for (const k of ['range', 'refresh']) {
    const v = cur.get(k);
    if (v) q.set(k, v);
  }
  for (const [k, v] of Object.entries(params)) if (v) q.set(k, v);
  const s = q.toString();
  return path + (s ? '?' + s : '');
}

export function installRouter() {
  addEventListener('popstate', () => route.set(current()));
  document.addEventListener('click', (e) => {
    if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
    const a = (e.target as Element).closest?.('a');
    if (!a || a.target || a.hasAttribute('download')) return;
    const url = new URL(a.href, location.href);
    if (url.origin !== location.origin || url.pathname.startsWith('/api/')) return;
    e.preventDefault();
    navigate(url.pathname + url.search);
    window.scrollTo(0, 0);
  });
}

export function useRoute(): Loc {
  const [l, setL] = useState(route.get());
  useEffect(() => route.subscribe(setL), []);
  return l;
}
