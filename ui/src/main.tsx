import { render } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import './style.css';
import { connection } from './api';
import { installRouter, navigate, setQuery, useRoute, href } from './router';
import { theme, useRange } from './state';
import { useStore } from './store';
import { RANGES, REFRESH, rangeLabel, bounds, fmtTime } from './time';
import { Overview } from './pages/overview';
import { Explore } from './pages/explore';
import { Traces } from './pages/traces';
import { TraceView } from './pages/trace';
import { Logs } from './pages/logs';
import { Hosts } from './pages/hosts';
import { Policies } from './pages/policies';
import { Alerts } from './pages/alerts';
import { Anomalies } from './pages/anomalies';
import { ServiceMap } from './pages/servicemap';
import { installBench } from './bench';

const PAGES = [
  { path: '/overview', key: 'o', label: 'Overview', icon: 'M3 13h4v8H3zM10 3h4v18h-4zM17 9h4v12h-4z' },
  { path: '/explore', key: 'm', label: 'Metrics', icon: 'M3 17l5-6 4 4 8-10M3 21h18' },
  { path: '/traces', key: 't', label: 'Traces', icon: 'M4 5h10M7 10h10M10 15h8M6 20h6' },
  { path: '/logs', key: 'l', label: 'Logs & events', icon: 'M4 6h16M4 10h16M4 14h10M4 18h13' },
  { path: '/service-map', key: 's', label: 'Service map', icon: 'M4 6h5v4H4zM15 4h5v4h-5zM15 16h5v4h-5zM9 8l6-2M9 8l6 10' },
  { path: '/alerts', key: 'a', label: 'Alerts', icon: 'M12 3a6 6 0 016 6v4l2 3H4l2-3V9a6 6 0 016-6zM10 19a2 2 0 004 0' },
  { path: '/anomalies', key: 'n', label: 'Anomalies', icon: 'M3 17l4-4 3 3 4-8 3 5h4M17 5h.01' },
  { path: '/hosts', key: 'h', label: 'Hosts', icon: 'M4 4h16v6H4zM4 14h16v6H4zM7 7h.01M7 17h.01' },
  { path: '/policies', key: 'p', label: 'Policies', icon: 'M12 3l8 4v5c0 5-3.5 8-8 9-4.5-1-8-4-8-9V7z' },
];

function Icon({ d }: { d: string }) {
  return (
    <svg viewBox="0 0 24 24" width="18" height="18" fill="none" stroke="currentColor" stroke-width="1.8" stroke-linecap="round" stroke-linejoin="round" aria-hidden="true">
      <path d={d} />
    </svg>
  );
}

function Nav({ path }: { path: string }) {
  return (
    <nav class="nav" aria-label="pages">
      <a class="brand" href={href('/overview')} aria-label="Sonde overview">
        <svg viewBox="0 0 32 32" width="26" height="26" aria-hidden="true">
          <circle cx="16" cy="16" r="14" fill="var(--accent-bg)" />
          <path d="M5 18h5l3-8 4 14 3-9 2 3h5" fill="none" stroke="var(--accent)" stroke-width="2.5" stroke-linecap="round" stroke-linejoin="round" />
        </svg>
        <span>Sonde</span>
      </a>
      {PAGES.map((p) => (
        <a key={p.path} href={href(p.path)} class={'nav-i' + (path.startsWith(p.path) ? ' active' : '')} aria-current={path.startsWith(p.path) ? 'page' : undefined} title={`${p.label} (g then ${p.key})`}>
          <Icon d={p.icon} />
          <span class="nav-l">{p.label}</span>
          <kbd class="nav-k">g {p.key}</kbd>
        </a>
      ))}
    </nav>
  );
}

function TopBar({ title }: { title: string }) {
  const { range, refresh } = useRange();
  const t = useStore(theme);
  const conn = useStore(connection);
  const live = bounds(range).live;
  return (
    <header class="top">
      <h1>{title}</h1>
      <div class="top-controls">
        {!conn.up ? (
          <span class="live offline" title="the server does not answer">
            <i /> offline
          </span>
        ) : live && refresh !== 'off' ? (
          <span class="live" title="updating live">
            <i /> live
          </span>
        ) : (
          <span class="live paused" title={live ? 'auto-refresh is off' : 'a fixed time range'}>
            <i /> {live ? 'paused' : 'fixed range'}
          </span>
        )}
        <label class="ctl">
          <span class="sr">time range</span>
          <select aria-label="time range" data-testid="range" value={RANGES.includes(range) ? range : 'custom'} onChange={(e) => setQuery({ range: (e.target as HTMLSelectElement).value }, true)}>
            {!RANGES.includes(range) && <option value="custom">{rangeLabel(range)}</option>}
            {RANGES.map((r) => (
              <option key={r} value={r}>
                Last {r}
              </option>
            ))}
          </select>
        </label>
        <label class="ctl">
          <span class="sr">auto-refresh</span>
          <select aria-label="auto-refresh" value={refresh} onChange={(e) => setQuery({ refresh: (e.target as HTMLSelectElement).value }, true)}>
            {REFRESH.map((r) => (
              <option key={r} value={r}>
                {r === 'off' ? 'refresh off' : `every ${r}`}
              </option>
            ))}
          </select>
        </label>
        <button class="btn icon" onClick={() => theme.set(t === 'dark' ? 'light' : 'dark')} title="dark / light theme (shift+D)" aria-label="toggle theme">
          {t === 'dark' ? '☀' : '☾'}
        </button>
        <button class="btn icon" onClick={() => help.open()} title="keyboard shortcuts (?)" aria-label="keyboard shortcuts">
          ?
        </button>
      </div>
    </header>
  );
}

function ConnectionBanner() {
  const c = useStore(connection);
  useEffect(() => {
    if (c.up) return;
    // While the server is away, ping it so the banner clears on its own.
    const id = setInterval(() => {
      fetch('/ready').then((r) => r.ok && connection.set({ up: true, since: Date.now(), message: '' }), () => {});
    }, 2000);
    return () => clearInterval(id);
  }, [c.up]);
  return (
    <div class={'banner' + (c.up ? ' hidden' : '')} role="status" aria-live="polite" data-testid="offline">
      {!c.up && (
        <>
          <strong>Cannot reach the Sonde server</strong> since {fmtTime(c.since)}. Showing the last data received; retrying…
        </>
      )}
    </div>
  );
}

const help = {
  open: () => {},
};

function Help() {
  const [open, setOpen] = useState(false);
  help.open = () => setOpen(true);
  useEffect(() => {
    const f = (e: KeyboardEvent) => e.key === 'Escape' && setOpen(false);
    addEventListener('keydown', f);
    return () => removeEventListener('keydown', f);
  }, []);
  if (!open) return null;
  return (
    <div class="modal-bg" onClick={() => setOpen(false)}>
      <div class="modal" role="dialog" aria-label="keyboard shortcuts" onClick={(e) => e.stopPropagation()}>
        <h2>Keyboard shortcuts</h2>
        <table class="kv">
          <tbody>
            {PAGES.map((p) => (
              <tr key={p.key}>
                <th>
                  <kbd>g</kbd> <kbd>{p.key}</kbd>
                </th>
                <td>{p.label}</td>
              </tr>
            ))}
            <tr>
              <th>
                <kbd>/</kbd>
              </th>
              <td>focus the page's search or query field</td>
            </tr>
            <tr>
              <th>
                <kbd>Ctrl</kbd> <kbd>Enter</kbd>
              </th>
              <td>run the query</td>
            </tr>
            <tr>
              <th>
                <kbd>Space</kbd>
              </th>
              <td>pause / resume the live tail (Logs)</td>
            </tr>
            <tr>
              <th>
                <kbd>Shift</kbd> <kbd>D</kbd>
              </th>
              <td>dark / light theme</td>
            </tr>
            <tr>
              <th>
                <kbd>?</kbd>
              </th>
              <td>this help</td>
            </tr>
          </tbody>
        </table>
        <button class="btn" onClick={() => setOpen(false)} autofocus>
          Close
        </button>
      </div>
    </div>
  );
}

function typing(e: KeyboardEvent) {
  const t = e.target as HTMLElement;
  return t && (t.tagName === 'INPUT' || t.tagName === 'TEXTAREA' || t.tagName === 'SELECT' || t.isContentEditable);
}

function installKeys() {
  let g = 0;
  addEventListener('keydown', (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey || typing(e)) return;
    if (g && Date.now() - g < 1500) {
      g = 0;
      const p = PAGES.find((p) => p.key === e.key);
      if (p) {
        e.preventDefault();
        navigate(href(p.path));
        (document.querySelector('main') as HTMLElement | null)?.focus();
      }
      return;
    }
    if (e.key === 'g') g = Date.now();
    else if (e.key === '?') help.open();
    else if (e.key === 'D' && e.shiftKey) theme.set(theme.get() === 'dark' ? 'light' : 'dark');
    else if (e.key === '/') {
      const el = document.querySelector<HTMLElement>('[data-search]');
      if (el) {
        e.preventDefault();
        el.focus();
      }
    }
  });
}

function App() {
  const { path } = useRoute();
  let page;
  let title;
  const traceMatch = /^\/traces\/([0-9a-fA-F]+)$/.exec(path);
  if (path === '/' || path.startsWith('/overview')) [page, title] = [<Overview />, 'Overview'];
  else if (path.startsWith('/explore')) [page, title] = [<Explore />, 'Metrics explorer'];
  else if (traceMatch) [page, title] = [<TraceView id={traceMatch[1].toLowerCase()} />, 'Trace'];
  else if (path.startsWith('/traces')) [page, title] = [<Traces />, 'Traces'];
  else if (path.startsWith('/logs')) [page, title] = [<Logs />, 'Logs & events'];
  else if (path.startsWith('/hosts')) [page, title] = [<Hosts />, 'Hosts'];
  else if (path.startsWith('/alerts')) [page, title] = [<Alerts />, 'Alerts'];
  else if (path.startsWith('/anomalies')) [page, title] = [<Anomalies />, 'Anomalies'];
  else if (path.startsWith('/service-map')) [page, title] = [<ServiceMap />, 'Service map'];
  else if (path.startsWith('/policies')) [page, title] = [<Policies />, 'Policies'];
  else [page, title] = [<div class="empty">No such page. <a href="/overview">Go to the overview</a>.</div>, 'Not found'];
  useEffect(() => {
    document.title = `${title} · Sonde`;
  }, [title]);
  return (
    <div class="shell">
      <a class="skip" href="#main">
        Skip to content
      </a>
      <div class="nav-col">
        <Nav path={path === '/' ? '/overview' : path} />
      </div>
      <div class="content">
        <TopBar title={title} />
        <ConnectionBanner />
        <main id="main" tabIndex={-1}>
          {page}
        </main>
      </div>
      <Help />
    </div>
  );
}

installRouter();
installKeys();
installBench();
render(<App />, document.getElementById('app')!);
