// Service map: who calls whom in the time range, from the span-derived
// service graph. A layered SVG: services in columns by their depth from
// the entry points (no incoming edge), databases and external systems in
// the last column; edges labelled with rate, errors and p95 and coloured
// by error rate. A service with anomaly events in the range gets a ring
// and a badge (count, highest score) that opens its anomalies. Refreshed
// every 10 s.
import { useEffect, useMemo, useState } from 'preact/hooks';
import { api, LogRecord } from '../api';
import { explanation, ofService, scoreColor, scoreOf, ticksPer, useAnomalyEvents } from '../anomaly';
import { Empty, ErrorBox, Panel, Skeleton } from '../components';
import { href, navigate } from '../router';
import { useRange, useTick } from '../state';
import { bounds, fmtCount, fmtDateTime, fmtNum, fmtPct, fmtTime, nsToMs } from '../time';

interface GNode {
  id: string;
  type: 'service' | 'database' | 'external' | string;
  requests: number;
  errorRate: number | null;
}
interface GEdge {
  source: string;
  target: string;
  connectionType?: string;
  requests: number;
  ratePerSecond: number;
  errorRate: number | null;
  p50Ms: number | null;
  p95Ms: number | null;
}
interface Graph {
  nodes: GNode[];
  edges: GEdge[];
}

const NODE_W = 170;
const NODE_H = 48;
const COL_GAP = 170;
const ROW_GAP = 34;
const PAD = 24;

export function errColor(rate: number | null | undefined): string {
  if (rate === null || rate === undefined || !Number.isFinite(rate)) return 'var(--muted)';
  if (rate >= 0.05) return 'var(--bad)';
  if (rate >= 0.01) return 'var(--warn)';
  return 'var(--ok)';
}

/** Column of every node: the longest path from an entry point, cycles cut; databases and external last. */
export function layout(g: Graph) {
  const ids = new Set(g.nodes.map((n) => n.id));
  for (const e of g.edges) for (const id of [e.source, e.target]) if (!ids.has(id)) (ids.add(id), g.nodes.push({ id, type: 'service', requests: 0, errorRate: null }));
  const type = new Map(g.nodes.map((n) => [n.id, n.type]));
  const out = new Map<string, string[]>();
  const indeg = new Map<string, number>();
  for (const n of g.nodes) (out.set(n.id, []), indeg.set(n.id, 0));
  for (const e of g.edges) {
    if (e.source === e.target) continue;
    out.get(e.source)!.push(e.target);
    indeg.set(e.target, (indeg.get(e.target) ?? 0) + 1);
  }
  const depth = new Map<string, number>();
  const services = g.nodes.filter((n) => n.type === 'service');
  let roots = services.filter((n) => !indeg.get(n.id)).map((n) => n.id);
  if (!roots.length && services.length) roots = [services[0].id];
  // BFS by longest path, bounded so a cycle cannot loop forever.
  const queue = roots.map((id) => [id, 0] as [string, number]);
  for (const id of roots) depth.set(id, 0);
  let guard = 0;
  while (queue.length && guard++ < 10_000) {
    const [id, d] = queue.shift()!;
    for (const t of out.get(id) ?? []) {
      if (type.get(t) !== 'service') continue;
      if ((depth.get(t) ?? -1) < d + 1 && d + 1 < g.nodes.length) {
        depth.set(t, d + 1);
        queue.push([t, d + 1]);
      }
    }
  }
  for (const n of services) if (!depth.has(n.id)) depth.set(n.id, 0);
  const maxSvc = Math.max(0, ...services.map((n) => depth.get(n.id)!));
  const others = g.nodes.filter((n) => n.type !== 'service');
  for (const n of others) depth.set(n.id, maxSvc + 1);
  const cols: string[][] = [];
  for (const n of [...g.nodes].sort((a, b) => a.id.localeCompare(b.id))) (cols[depth.get(n.id)!] ??= []).push(n.id);
  const rows = Math.max(1, ...cols.map((c) => c?.length ?? 0));
  const height = PAD * 2 + rows * NODE_H + (rows - 1) * ROW_GAP;
  const pos = new Map<string, { x: number; y: number }>();
  cols.forEach((c, ci) => {
    if (!c) return;
    const colH = c.length * NODE_H + (c.length - 1) * ROW_GAP;
    const top = (height - colH) / 2;
    c.forEach((id, ri) => pos.set(id, { x: PAD + ci * (NODE_W + COL_GAP), y: top + ri * (NODE_H + ROW_GAP) }));
  });
  const width = PAD * 2 + cols.length * NODE_W + Math.max(0, cols.length - 1) * COL_GAP;
  return { pos, width, height };
}

interface NodeAnomalies {
  count: number;
  max: number | null;
  latest: LogRecord;
}

/** Per service node: its anomaly events' count, highest score and the newest one. */
export function anomaliesByNode(nodes: GNode[], events: LogRecord[]): Map<string, NodeAnomalies> {
  const by = new Map<string, NodeAnomalies>();
  for (const n of nodes) {
    if (n.type !== 'service') continue;
    for (const r of events) {
      if (!ofService(r, n.id)) continue;
      const s = scoreOf(r);
      const cur = by.get(n.id);
      if (!cur) by.set(n.id, { count: 1, max: s, latest: r });
      else {
        cur.count++;
        if (s !== null && (cur.max === null || s > cur.max)) cur.max = s;
        if (BigInt(r.timeUnixNano) > BigInt(cur.latest.timeUnixNano)) cur.latest = r;
      }
    }
  }
  return by;
}

const fmtMs = (v: number | null) => (v === null || v === undefined || !Number.isFinite(v) ? '–' : v >= 1000 ? `${fmtNum(v / 1000, 3)}s` : `${fmtNum(v, 3)}ms`);

export function ServiceMap() {
  const { range, refresh } = useRange();
  const tick = useTick();
  const slot = Math.floor(tick / ticksPer(refresh, 10));
  const [graph, setGraph] = useState<(Graph & { at: number }) | null>(null);
  const [err, setErr] = useState<unknown>(null);
  const [hover, setHover] = useState<string | null>(null);

  useEffect(() => {
    let alive = true;
    const b = bounds(range);
    api<Graph>('/api/v1/service_graph', { start: b.start.toFixed(3), end: b.end.toFixed(3) }).then(
      (g) => {
        if (!alive) return;
        setGraph({ nodes: g.nodes ?? [], edges: g.edges ?? [], at: Date.now() });
        setErr(null);
      },
      (e) => alive && (setErr(e), setGraph((g) => g ?? { nodes: [], edges: [], at: Date.now() })),
    );
    return () => {
      alive = false;
    };
  }, [range, slot]);

  const lay = useMemo(() => (graph ? layout({ nodes: [...graph.nodes], edges: graph.edges }) : null), [graph]);
  // Same slot as the graph: both refresh together.
  const anomalies = useAnomalyEvents(tick);
  const marked = useMemo(() => anomaliesByNode(graph?.nodes ?? [], anomalies.events), [graph, anomalies.events]);

  return (
    <div class="page service-map">
      <ErrorBox error={err} what="Loading the service graph" />
      <ErrorBox error={anomalies.error} what="Loading anomalies" />
      <Panel
        title="Service map"
        actions={
          <span class="muted small legend-inline">
            <i style={{ background: 'var(--ok)' }} /> &lt;1% errors <i style={{ background: 'var(--warn)' }} /> 1–5% <i style={{ background: 'var(--bad)' }} /> ≥5% · ⚠ anomalies: count · highest score
            {graph ? ` · ${graph.nodes.length} nodes, ${graph.edges.length} edges · ${fmtTime(graph.at)}` : ''}
          </span>
        }
      >
        {graph === null || !lay ? (
          <Skeleton height={260} />
        ) : graph.nodes.length === 0 ? (
          <Empty hint="The map is derived from CLIENT and SERVER spans (and database or peer.service attributes) received in the time range.">No service calls in this time range.</Empty>
        ) : (
          <div class="map-wrap">
            <svg class="map" width={lay.width} height={lay.height} viewBox={`0 0 ${lay.width} ${lay.height}`} data-testid="service-map" role="img" aria-label="service map">
              <defs>
                {['ok', 'warn', 'bad', 'muted'].map((k) => (
                  <marker key={k} id={`arrow-${k}`} viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse">
                    <path d="M0 0L10 5L0 10z" fill={`var(--${k})`} />
                  </marker>
                ))}
              </defs>
              {graph.edges.map((e) => {
                const a = lay.pos.get(e.source);
                const b = lay.pos.get(e.target);
                if (!a || !b) return null;
                const c = errColor(e.errorRate);
                const mk = c.slice(6, -1).replace('--', '');
                const dim = hover && hover !== e.source && hover !== e.target;
                let d: string;
                let lx: number;
                let ly: number;
                if (e.source === e.target) {
                  d = `M${a.x + NODE_W - 30} ${a.y} C ${a.x + NODE_W - 30} ${a.y - 40}, ${a.x + NODE_W + 20} ${a.y - 40}, ${a.x + NODE_W} ${a.y + 10}`;
                  [lx, ly] = [a.x + NODE_W, a.y - 34];
                } else if (b.x > a.x) {
                  const [x1, y1, x2, y2] = [a.x + NODE_W, a.y + NODE_H / 2, b.x, b.y + NODE_H / 2];
                  const mx = (x1 + x2) / 2;
                  d = `M${x1} ${y1} C ${mx} ${y1}, ${mx} ${y2}, ${x2 - 2} ${y2}`;
                  [lx, ly] = [mx, (y1 + y2) / 2 - 6];
                } else {
                  // backwards or same column: arc below
                  const [x1, y1, x2, y2] = [a.x + NODE_W / 2, a.y + NODE_H, b.x + NODE_W / 2, b.y + NODE_H];
                  const dy = 50 + Math.abs(x1 - x2) / 6;
                  d = `M${x1} ${y1} C ${x1} ${y1 + dy}, ${x2} ${y2 + dy}, ${x2} ${y2 + 2}`;
                  [lx, ly] = [(x1 + x2) / 2, Math.max(y1, y2) + dy * 0.75];
                }
                return (
                  <g key={e.source + '>' + e.target} class={'edge' + (dim ? ' dim' : '')} data-testid="map-edge" data-source={e.source} data-target={e.target}>
                    <path d={d} fill="none" stroke={c} stroke-width={1.5 + Math.min(4, Math.log10(1 + (e.ratePerSecond ?? 0)) * 2)} marker-end={`url(#arrow-${mk})`}>
                      <title>
                        {`${e.source} → ${e.target}${e.connectionType ? ` (${e.connectionType})` : ''}\n${fmtNum(e.requests, 4)} requests, ${fmtNum(e.ratePerSecond, 3)}/s\nerrors ${fmtPct(e.errorRate)}\np50 ${fmtMs(e.p50Ms)}, p95 ${fmtMs(e.p95Ms)}`}
                      </title>
                    </path>
                    <text x={lx} y={ly - 18} text-anchor="middle" class="edge-l">
                      <tspan x={lx}>{`${fmtNum(e.ratePerSecond, 3)}/s · ${fmtPct(e.errorRate)} err`}</tspan>
                      <tspan x={lx} dy={14}>{`p95 ${fmtMs(e.p95Ms)}`}</tspan>
                    </text>
                  </g>
                );
              })}
              {graph.nodes.map((n) => {
                const p = lay.pos.get(n.id);
                if (!p) return null;
                const svc = n.type === 'service';
                const go = () => svc && navigate(href('/traces', { service: n.id }));
                const an = marked.get(n.id);
                // The events' own service name: `namespace/name` where spans say `name`.
                const anHref = href('/anomalies', { service: an?.latest.service || n.id });
                const anColor = an ? scoreColor(an.max) : '';
                const anText = an ? `${an.count} · ${an.max === null ? '?' : fmtNum(an.max, 2)}` : '';
                const anTitle = an
                  ? `${an.count} ${an.count === 1 ? 'anomaly' : 'anomalies'}, highest score ${an.max === null ? '?' : fmtNum(an.max, 3)}\nlatest, ${fmtDateTime(nsToMs(an.latest.timeUnixNano))}: ${explanation(an.latest)}`
                  : '';
                const badgeW = 16 + anText.length * 6.5;
                return (
                  <g
                    key={n.id}
                    class={'node ' + n.type + (svc ? ' link' : '')}
                    transform={`translate(${p.x},${p.y})`}
                    data-testid="map-node"
                    data-id={n.id}
                    data-type={n.type}
                    data-anomalies={an?.count}
                    data-max-score={an?.max ?? undefined}
                    tabIndex={svc ? 0 : undefined}
                    role={svc ? 'link' : undefined}
                    aria-label={svc ? `${n.id}: traces` : n.id}
                    onClick={go}
                    onKeyDown={(e) => e.key === 'Enter' && go()}
                    onMouseEnter={() => setHover(n.id)}
                    onMouseLeave={() => setHover(null)}
                  >
                    <title>{(svc ? `${n.id}: click for its traces` : `${n.type} ${n.id}`) + (an ? `\n${anTitle}` : '')}</title>
                    {an && <rect class="anomaly-ring" x={-5} y={-5} width={NODE_W + 10} height={NODE_H + 10} rx={10} stroke={anColor} />}
                    <rect width={NODE_W} height={NODE_H} rx={n.type === 'database' ? 14 : 7} stroke={errColor(n.errorRate)} />
                    <text x={12} y={20} class="node-n">
                      {(n.type === 'database' ? '⛁ ' : n.type === 'external' ? '↗ ' : '') + (n.id.length > 20 ? n.id.slice(0, 19) + '…' : n.id)}
                    </text>
                    <text x={12} y={37} class="node-s">
                      {n.type === 'service' ? `${fmtCount(n.requests)} req · ${fmtPct(n.errorRate)} err` : n.type}
                    </text>
                    {an && (
                      <g transform={`translate(${NODE_W - badgeW + 6},${-10})`}>
                        {/* A real link (middle-click, copy); a plain click is routed here, as the router
                        leaves SVG links to the browser, and must not reach the node (its traces). */}
                        <a
                          href={anHref}
                          class="anomaly-badge"
                          data-testid="map-anomaly-badge"
                          data-count={an.count}
                          aria-label={`${n.id}: ${an.count} anomalies`}
                          onClick={(e) => {
                            if (e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return e.stopPropagation();
                            e.preventDefault();
                            e.stopPropagation();
                            navigate(anHref);
                          }}
                          onKeyDown={(e) => e.key === 'Enter' && e.stopPropagation()}
                        >
                          <title>{anTitle + '\nclick for these anomalies'}</title>
                          <rect width={badgeW} height={18} rx={9} stroke={anColor} />
                          <text x={badgeW / 2} y={13} text-anchor="middle" fill={anColor}>
                            {'⚠ ' + anText}
                          </text>
                        </a>
                      </g>
                    )}
                  </g>
                );
              })}
            </svg>
          </div>
        )}
      </Panel>
    </div>
  );
}
