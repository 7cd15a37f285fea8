// Alerting: the firing and pending alerts (with their summary), every rule
// with its state and health, and the recent state transitions. Polled every
// few seconds (the refresh setting, at least 2 s apart).
import { useEffect, useState } from 'preact/hooks';
import { api } from '../api';
import { Badge, Empty, ErrorBox, Panel, Skeleton } from '../components';
import { useTick } from '../state';
import { ago, fmtDateTime } from '../time';

export interface Alert {
  labels: Record<string, string>;
  annotations: Record<string, string>;
  state: string;
  activeAt?: string;
  value?: string;
}

interface Rule {
  name: string;
  type: 'alerting' | 'recording';
  state?: string;
  health: string;
  lastError?: string;
  query: string;
  duration?: number;
  lastEvaluation?: string;
  alerts?: Alert[];
  labels?: Record<string, string>;
}

interface Group {
  name: string;
  file?: string;
  interval?: number;
  rules: Rule[];
}

interface Transition {
  rule: string;
  group?: string;
  labels: Record<string, string>;
  from: string;
  to: string;
  at: string;
  value?: string;
}

const stateKind = (s: string | undefined) => (s === 'firing' ? 'err' : s === 'pending' ? 'warn' : s === 'inactive' ? 'ok' : '');
const healthKind = (h: string) => (h === 'ok' ? 'ok' : h === 'err' || h === 'error' ? 'err' : 'warn');

/** Labels other than alertname, as `k="v"` chips. */
function Labels({ labels, skip = ['alertname'] }: { labels: Record<string, string>; skip?: string[] }) {
  const ks = Object.keys(labels ?? {})
    .filter((k) => !skip.includes(k))
    .sort();
  if (!ks.length) return null;
  return (
    <span class="labels">
      {ks.map((k) => (
        <span key={k} class="label mono small">
          {k}="{labels[k]}"
        </span>
      ))}
    </span>
  );
}

function fmtVal(v: string | undefined) {
  if (v === undefined || v === '') return '';
  const n = Number(v);
  return Number.isFinite(n) ? String(Number(n.toPrecision(4))) : v;
}

export function Alerts() {
  const tick = useTick();
  const [groups, setGroups] = useState<Group[] | null>(null);
  const [alerts, setAlerts] = useState<Alert[] | null>(null);
  const [history, setHistory] = useState<Transition[] | null>(null);
  const [err, setErr] = useState<unknown>(null);
  const [histErr, setHistErr] = useState<unknown>(null);
  // At the 1 s default refresh, poll every 2 s; slower settings as they are.
  const slot = Math.floor(tick / 2);
  useEffect(() => {
    let alive = true;
    Promise.all([api<{ groups: Group[] }>('/api/v1/rules'), api<{ alerts: Alert[] }>('/api/v1/alerts')]).then(
      ([r, a]) => {
        if (!alive) return;
        setGroups(r.groups ?? []);
        setAlerts(a.alerts ?? []);
        setErr(null);
      },
      (e) => {
        if (!alive) return;
        setErr(e);
        setGroups((g) => g ?? []);
        setAlerts((a) => a ?? []);
      },
    );
    api<{ transitions: Transition[] } | Transition[]>('/api/v1/alerts/history', { limit: 100 }).then(
      (h) => {
        if (!alive) return;
        setHistory(Array.isArray(h) ? h : (h.transitions ?? []));
        setHistErr(null);
      },
      (e) => alive && (setHistErr(e), setHistory((h) => h ?? [])),
    );
    return () => {
      alive = false;
    };
  }, [slot]);

  const active = (alerts ?? [])
    .filter((a) => a.state === 'firing' || a.state === 'pending')
    .sort((a, b) => (a.state === b.state ? (a.activeAt ?? '').localeCompare(b.activeAt ?? '') : a.state === 'firing' ? -1 : 1));
  const rules = (groups ?? []).flatMap((g) => g.rules.map((r) => ({ g, r })));
  const firing = active.filter((a) => a.state === 'firing').length;

  return (
    <div class="page alerts">
      <ErrorBox error={err} what="Loading the rules" />
      <Panel
        title="Active alerts"
        actions={
          alerts && (
            <span class="muted small" data-testid="alert-counts">
              {firing} firing · {active.length - firing} pending
            </span>
          )
        }
      >
        {alerts === null ? (
          <Skeleton lines={2} />
        ) : active.length === 0 ? (
          <Empty hint={rules.length ? 'Every alerting rule is inactive.' : undefined}>No alerts firing or pending.</Empty>
        ) : (
          <ul class="alert-list" data-testid="active-alerts">
            {active.map((a, i) => (
              <li key={i} class={'alert-item ' + a.state} data-testid="alert">
                <div class="alert-top">
                  <Badge kind={stateKind(a.state)}>{a.state}</Badge>
                  <strong class="mono">{a.labels.alertname}</strong>
                  <Labels labels={a.labels} />
                  <span class="muted small grow-r" title={a.activeAt ? fmtDateTime(Date.parse(a.activeAt)) : ''}>
                    {a.activeAt ? `since ${ago(Date.parse(a.activeAt))}` : ''}
                    {a.value ? ` · value ${fmtVal(a.value)}` : ''}
                  </span>
                </div>
                {(a.annotations?.summary || a.annotations?.description) && (
                  <div class="alert-summary" data-testid="alert-summary">
                    {a.annotations.summary}
                    {a.annotations.description && <div class="muted small">{a.annotations.description}</div>}
                  </div>
                )}
              </li>
            ))}
          </ul>
        )}
      </Panel>
      <Panel title="Rules" actions={groups && <span class="muted small">{rules.length} rules in {groups.length} groups</span>}>
        {groups === null ? (
          <Skeleton lines={4} />
        ) : rules.length === 0 ? (
          <Empty hint={<>Load Prometheus rule files with <code>--rule-files 'rules/*.yml'</code> (or <code>rule_files</code> in the config).</>}>No rules.</Empty>
        ) : (
          <table class="grid auto" data-testid="rules">
            <thead>
              <tr>
                <th>group</th>
                <th>rule</th>
                <th>type</th>
                <th>state</th>
                <th>health</th>
                <th>query</th>
                <th>for</th>
                <th>last evaluation</th>
              </tr>
            </thead>
            <tbody>
              {rules.map(({ g, r }) => (
                <tr key={g.name + '/' + r.name} data-testid="rule-row">
                  <td class="muted">{g.name}</td>
                  <td class="mono">{r.name}</td>
                  <td>{r.type}</td>
                  <td>{r.type === 'alerting' ? <Badge kind={stateKind(r.state)}>{r.state ?? 'inactive'}</Badge> : <span class="muted">–</span>}</td>
                  <td>
                    <Badge kind={healthKind(r.health)}>{r.health || 'unknown'}</Badge>
                    {r.lastError && (
                      <div class="rule-error mono small" data-testid="rule-error">
                        {r.lastError}
                      </div>
                    )}
                  </td>
                  <td class="mono small query-cell" title={r.query}>
                    {r.query}
                  </td>
                  <td class="muted">{r.duration ? `${r.duration}s` : ''}</td>
                  <td class="muted small">{r.lastEvaluation && !r.lastEvaluation.startsWith('0001') ? ago(Date.parse(r.lastEvaluation)) : 'never'}</td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </Panel>
      <Panel title="History" actions={<span class="muted small">newest first, last 100 changes</span>}>
        <ErrorBox error={histErr} what="Alert history" />
        {history === null ? (
          <Skeleton lines={3} />
        ) : history.length === 0 ? (
          <Empty>No state changes yet.</Empty>
        ) : (
          <table class="grid auto" data-testid="history">
            <thead>
              <tr>
                <th>time</th>
                <th>rule</th>
                <th>change</th>
                <th>labels</th>
                <th class="num">value</th>
              </tr>
            </thead>
            <tbody>
              {history.map((t, i) => (
                <tr key={i} data-testid="history-row">
                  <td class="muted small" title={fmtDateTime(Date.parse(t.at))}>
                    {fmtDateTime(Date.parse(t.at))}
                  </td>
                  <td class="mono">{t.rule}</td>
                  <td>
                    <Badge kind={stateKind(t.from)}>{t.from}</Badge> → <Badge kind={stateKind(t.to)}>{t.to}</Badge>
                  </td>
                  <td>
                    <Labels labels={t.labels} />
                  </td>
                  <td class="num mono">{fmtVal(t.value)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </Panel>
    </div>
  );
}
