// Runtime collection policies (list, create, edit, delete) and the SDKs and
// agents that follow them.
import { useEffect, useState } from 'preact/hooks';
import { api, send } from '../api';
import { Badge, Empty, ErrorBox, Panel, Skeleton } from '../components';
import { useTick } from '../state';
import { ago, fmtDateTime, nsToMs } from '../time';

interface Policy {
  id: string;
  scope: { kind: 'all' | 'service' | 'host'; name?: string };
  trace_sampling_ratio?: number | null;
  metric_interval?: string | null;
  min_log_severity?: number | null;
  collectors?: string[] | null;
  ttl?: string | null;
  updatedAtUnixNano?: string;
  expiresAtUnixNano?: string;
}

interface Client {
  client_id: string;
  kind?: string;
  service?: string;
  host?: string;
  version?: string;
  policy_version?: number;
  effective?: Record<string, unknown>;
  health?: { healthy?: boolean; exported_batches?: number; dropped_batches?: number; last_error?: string | null };
  lastSeenUnixNano: string;
  connected: boolean;
}

const COLLECTORS = ['cpu', 'load', 'memory', 'disk', 'filesystem', 'network', 'pressure', 'processes'];
const SEVERITIES: [string, number][] = [
  ['trace', 1],
  ['debug', 5],
  ['info', 9],
  ['warn', 13],
  ['error', 17],
  ['fatal', 21],
];
const sevName = (n: number | null | undefined) => {
  if (n === null || n === undefined) return '–';
  const s = [...SEVERITIES].reverse().find(([, v]) => n >= v);
  return s ? `${s[0]} (${n})` : String(n);
};

interface Draft {
  id: string;
  kind: 'all' | 'service' | 'host';
  name: string;
  sampling: string;
  interval: string;
  severity: string;
  collectors: string[] | null;
  ttl: string;
}

const blank: Draft = { id: '', kind: 'all', name: '', sampling: '', interval: '', severity: '', collectors: null, ttl: '' };

function toDraft(p: Policy): Draft {
  return {
    id: p.id,
    kind: p.scope.kind,
    name: p.scope.name ?? '',
    sampling: p.trace_sampling_ratio?.toString() ?? '',
    interval: p.metric_interval ?? '',
    severity: p.min_log_severity?.toString() ?? '',
    collectors: p.collectors ?? null,
    ttl: p.ttl ?? '',
  };
}

function toBody(d: Draft) {
  const body: Record<string, unknown> = { scope: d.kind === 'all' ? { kind: 'all' } : { kind: d.kind, name: d.name.trim() } };
  if (d.sampling.trim()) body.trace_sampling_ratio = Number(d.sampling);
  if (d.interval.trim()) body.metric_interval = d.interval.trim();
  if (d.severity) body.min_log_severity = Number(d.severity);
  if (d.collectors) body.collectors = d.collectors;
  if (d.ttl.trim()) body.ttl = d.ttl.trim();
  return body;
}

export function Policies() {
  const tick = useTick();
  const [policies, setPolicies] = useState<Policy[] | null>(null);
  const [clients, setClients] = useState<Client[] | null>(null);
  const [err, setErr] = useState<unknown>(null);
  const [editing, setEditing] = useState<Draft | null>(null);
  const [confirm, setConfirm] = useState<string | null>(null);
  const [version, setVersion] = useState(0);
  useEffect(() => {
    api<Policy[]>('/api/v1/policies').then(
      (p) => {
        setPolicies(p);
        setErr(null);
      },
      (e) => (setErr(e), setPolicies((p) => p ?? [])),
    );
    api<Client[]>('/api/v1/clients').then(setClients, () => setClients((c) => c ?? []));
  }, [Math.floor(tick / 5), version]);

  const del = async (id: string) => {
    try {
      await send('DELETE', `/api/v1/policies/${encodeURIComponent(id)}`);
      setConfirm(null);
      setVersion((v) => v + 1);
    } catch (e) {
      setErr(e);
    }
  };

  return (
    <div class="page policies">
      <Panel
        title="Collection policies"
        actions={
          <button class="btn primary" onClick={() => setEditing({ ...blank })} data-testid="new-policy">
            New policy
          </button>
        }
      >
        <p class="muted small">
          What SDKs and agents collect, changed at run time: the most specific scope wins (all, then service, then host). Clients apply a change within a second.
        </p>
        <ErrorBox error={err} what="Policies" />
        {editing && <Editor draft={editing} onClose={() => setEditing(null)} onSaved={() => (setEditing(null), setVersion((v) => v + 1))} />}
        {policies === null ? (
          <Skeleton lines={3} />
        ) : policies.length === 0 ? (
          <Empty hint="Without a policy every client uses its own configured defaults.">No policies.</Empty>
        ) : (
          <table class="grid auto" data-testid="policies">
            <thead>
              <tr>
                <th>id</th>
                <th>scope</th>
                <th class="num">sampling</th>
                <th>interval</th>
                <th>min severity</th>
                <th>collectors</th>
                <th>expires</th>
                <th />
              </tr>
            </thead>
            <tbody>
              {policies.map((p) => (
                <tr key={p.id} data-testid="policy-row">
                  <td class="mono">{p.id}</td>
                  <td>
                    <Badge>{p.scope.kind}</Badge> {p.scope.name}
                  </td>
                  <td class="num">{p.trace_sampling_ratio ?? '–'}</td>
                  <td>{p.metric_interval ?? '–'}</td>
                  <td>{sevName(p.min_log_severity)}</td>
                  <td class="small">{p.collectors?.join(', ') ?? '–'}</td>
                  <td class="small">{p.expiresAtUnixNano && p.expiresAtUnixNano !== '0' ? fmtDateTime(nsToMs(p.expiresAtUnixNano)) : 'never'}</td>
                  <td class="actions">
                    <button class="btn small" onClick={() => setEditing(toDraft(p))}>
                      Edit
                    </button>
                    {confirm === p.id ? (
                      <>
                        <button class="btn small danger" onClick={() => del(p.id)} data-testid="confirm-delete">
                          Delete {p.id}?
                        </button>
                        <button class="btn small" onClick={() => setConfirm(null)}>
                          Keep
                        </button>
                      </>
                    ) : (
                      <button class="btn small" onClick={() => setConfirm(p.id)} data-testid="delete">
                        Delete
                      </button>
                    )}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </Panel>
      <Panel title="Connected SDKs and agents">
        {clients === null ? (
          <Skeleton lines={3} />
        ) : clients.length === 0 ? (
          <Empty hint="SDKs and `sonde agent` subscribe to /api/v1/policies/watch and report their status.">No clients have reported yet.</Empty>
        ) : (
          <table class="grid auto" data-testid="clients">
            <thead>
              <tr>
                <th>client</th>
                <th>kind</th>
                <th>service</th>
                <th>host</th>
                <th class="num">policy version</th>
                <th>health</th>
                <th>last seen</th>
              </tr>
            </thead>
            <tbody>
              {clients.map((c) => (
                <tr key={c.client_id}>
                  <td class="mono small">
                    <i class={'dot ' + (c.connected ? 'open' : 'error')} title={c.connected ? 'connected' : 'not connected'} /> {c.client_id}
                  </td>
                  <td>{c.kind ?? '–'}</td>
                  <td>{c.service ?? '–'}</td>
                  <td>{c.host ?? '–'}</td>
                  <td class="num">{c.policy_version ?? '–'}</td>
                  <td class="small">
                    {c.health ? (
                      <>
                        <Badge kind={c.health.healthy === false ? 'err' : 'ok'}>{c.health.healthy === false ? 'unhealthy' : 'healthy'}</Badge> {c.health.exported_batches ?? 0} sent ·{' '}
                        {c.health.dropped_batches ?? 0} dropped
                        {c.health.last_error && <div class="bad">{c.health.last_error}</div>}
                      </>
                    ) : (
                      '–'
                    )}
                  </td>
                  <td class="small">{ago(nsToMs(c.lastSeenUnixNano))}</td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </Panel>
    </div>
  );
}

function Editor({ draft, onClose, onSaved }: { draft: Draft; onClose: () => void; onSaved: () => void }) {
  const [d, setD] = useState<Draft>(draft);
  const [err, setErr] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const isNew = !draft.id;
  const set = (k: keyof Draft) => (e: Event) => setD({ ...d, [k]: (e.target as HTMLInputElement).value });
  const save = async (e: Event) => {
    e.preventDefault();
    if (!d.id.trim()) return setErr(new Error('a policy needs an id'));
    setBusy(true);
    try {
      await send('PUT', `/api/v1/policies/${encodeURIComponent(d.id.trim())}`, toBody(d));
      onSaved();
    } catch (e) {
      setErr(e);
    } finally {
      setBusy(false);
    }
  };
  return (
    <form class="editor" onSubmit={save} data-testid="policy-editor" onKeyDown={(e) => e.key === 'Escape' && onClose()}>
      <h3>{isNew ? 'New policy' : `Edit ${draft.id}`}</h3>
      <div class="search-form">
        <label>
          id
          <input value={d.id} onInput={set('id')} disabled={!isNew} placeholder="checkout-debug" autofocus data-testid="p-id" />
        </label>
        <label class="short">
          scope
          <select value={d.kind} onChange={set('kind')} data-testid="p-kind">
            <option value="all">all</option>
            <option value="service">service</option>
            <option value="host">host</option>
          </select>
        </label>
        {d.kind !== 'all' && (
          <label>
            {d.kind} name
            <input value={d.name} onInput={set('name')} placeholder={d.kind === 'service' ? 'checkout' : 'web-1'} data-testid="p-name" />
          </label>
        )}
        <label class="short">
          trace sampling
          <input value={d.sampling} onInput={set('sampling')} placeholder="0 to 1" inputMode="decimal" data-testid="p-sampling" />
        </label>
        <label class="short">
          metric interval
          <input value={d.interval} onInput={set('interval')} placeholder="5s" />
        </label>
        <label class="short">
          min log severity
          <select value={d.severity} onChange={set('severity')}>
            <option value="">unset</option>
            {SEVERITIES.map(([n, v]) => (
              <option key={v} value={v}>
                {n} ({v})
              </option>
            ))}
          </select>
        </label>
        <label class="short">
          TTL
          <input value={d.ttl} onInput={set('ttl')} placeholder="15m" />
        </label>
      </div>
      <fieldset class="collectors">
        <legend>
          <label>
            <input type="checkbox" checked={d.collectors !== null} onChange={(e) => setD({ ...d, collectors: (e.target as HTMLInputElement).checked ? [...COLLECTORS] : null })} /> agent collectors
          </label>
        </legend>
        {d.collectors !== null &&
          COLLECTORS.map((c) => (
            <label key={c} class="check">
              <input
                type="checkbox"
                checked={d.collectors!.includes(c)}
                onChange={(e) => setD({ ...d, collectors: (e.target as HTMLInputElement).checked ? [...d.collectors!, c] : d.collectors!.filter((x) => x !== c) })}
              />{' '}
              {c}
            </label>
          ))}
      </fieldset>
      <ErrorBox error={err} what="Saving the policy" />
      <div class="editor-actions">
        <button class="btn primary" type="submit" disabled={busy} data-testid="p-save">
          {busy ? 'Saving…' : 'Save'}
        </button>
        <button class="btn" type="button" onClick={onClose}>
          Cancel
        </button>
      </div>
    </form>
  );
}
