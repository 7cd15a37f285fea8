// Small shared pieces: panels, error and empty states, badges, key/value tables.
import { ComponentChildren } from 'preact';
import { ApiError } from './api';

export function Panel({ title, actions, children, class: cls, id }: { title?: ComponentChildren; actions?: ComponentChildren; children: ComponentChildren; class?: string; id?: string }) {
  return (
    <section class={'panel ' + (cls ?? '')} id={id}>
      {(title || actions) && (
        <header class="panel-h">
          <h2>{title}</h2>
          <div class="panel-actions">{actions}</div>
        </header>
      )}
      <div class="panel-b">{children}</div>
    </section>
  );
}

export function ErrorBox({ error, what }: { error: unknown; what?: string }) {
  if (!error) return null;
  const e = error as ApiError;
  const unreachable = e instanceof ApiError && e.unreachable;
  return (
    <div class="error-box" role="alert" data-testid="error">
      <strong>{unreachable ? 'Server unreachable' : what ? `${what} failed` : 'Error'}</strong>
      {e instanceof ApiError && e.kind && !unreachable && e.kind !== 'error' && <span class="badge">{e.kind}</span>}
      <pre class="error-msg">{e.message ?? String(e)}</pre>
    </div>
  );
}

export function Empty({ children, hint }: { children: ComponentChildren; hint?: ComponentChildren }) {
  return (
    <div class="empty" data-testid="empty">
      <div>{children}</div>
      {hint && <div class="hint">{hint}</div>}
    </div>
  );
}

/** A placeholder of the final size, so nothing moves when data arrives. */
export function Skeleton({ height, lines }: { height?: number; lines?: number }) {
  if (lines) {
    return (
      <div class="skel-lines">
        {Array.from({ length: lines }, (_, i) => (
          <div key={i} class="skel" style={{ height: '14px', width: `${60 + ((i * 37) % 40)}%` }} />
        ))}
      </div>
    );
  }
  return <div class="skel" style={{ height: (height ?? 120) + 'px' }} />;
}

export function Badge({ children, kind }: { children: ComponentChildren; kind?: string }) {
  return <span class={'badge ' + (kind ?? '')}>{children}</span>;
}

export function severityKind(n: number): string {
  if (n >= 17) return 'err';
  if (n >= 13) return 'warn';
  if (n >= 9) return 'info';
  if (n > 0) return 'debug';
  return '';
}

export function fmtValue(v: unknown): string {
  if (v === null || v === undefined) return '';
  if (typeof v === 'string') return v;
  return JSON.stringify(v);
}

/** A record's body as one line; an empty body (many events) shows its attributes. */
export function bodyText(body: unknown, attrs?: Record<string, unknown>): string {
  const b = typeof body === 'string' ? body : body === null || body === undefined ? '' : JSON.stringify(body);
  if (b) return b;
  return Object.entries(attrs ?? {})
    .filter(([k]) => k !== 'event.name')
    .slice(0, 6)
    .map(([k, v]) => `${k}=${fmtValue(v)}`)
    .join('  ');
}

export function KV({ obj, empty = 'none' }: { obj: Record<string, unknown> | undefined; empty?: string }) {
  const keys = Object.keys(obj ?? {}).sort();
  if (!keys.length) return <div class="muted small">{empty}</div>;
  return (
    <table class="kv">
      <tbody>
        {keys.map((k) => (
          <tr key={k}>
            <th>{k}</th>
            <td>{fmtValue(obj![k])}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

export function serviceColor(name: string): string {
  let h = 0;
  for (let i = 0; i < name.length; i++) h = (h * 31 + name.charCodeAt(i)) >>> 0;
  return `hsl(${h % 360} 65% 55%)`;
}
