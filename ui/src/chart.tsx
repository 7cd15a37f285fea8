// uPlot charts: a time-series chart that takes new data without being
// rebuilt (setData), a points-only scatter, and SVG sparklines; both can
// mark moments (anomaly events) with vertical markers.
import { useEffect, useLayoutEffect, useRef } from 'preact/hooks';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import { theme, Theme } from './state';
import { useStore } from './store';
import { fmtDateTime, fmtNum } from './time';

export const PALETTE = [
  '#38bdf8', '#f97316', '#a3e635', '#f472b6', '#facc15', '#818cf8', '#2dd4bf', '#fb7185', '#c084fc', '#4ade80',
  '#60a5fa', '#fbbf24', '#e879f9', '#34d399', '#f87171', '#a78bfa',
];
export const color = (i: number) => PALETTE[i % PALETTE.length];

function css(name: string) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
}

/** A vertical marker at a moment; `title` shows on hover. */
export interface Marker {
  /** Unix seconds */
  t: number;
  color: string;
  title: string;
}

export interface ChartProps {
  /** one entry per y series */
  labels: string[];
  data: (number | null)[][];
  height: number;
  yFmt?: (v: number) => string;
  /** indexes of series to hide */
  hidden?: Set<number>;
  /** points only, no lines (a scatter over sorted x) */
  scatter?: boolean;
  colors?: string[];
  yLog?: boolean;
  onSelectRange?: (from: number, to: number) => void;
  onPointClick?: (idx: number, seriesIdx: number) => void;
  /** unit for the hover readout of the x axis */
  testId?: string;
  markers?: Marker[];
}

// uPlot's time axis labels, but at ticks of seconds the first one (and each
// new minute) gets the time alone under it: with the date too it is wide
// enough to run into the next minute's label.
//   tick incr, default, rollover of year, month, day, hour, minute, second, mode (1: append)
const NL_HM = '\n{h}:{mm}{aa}';
const TIME_AXIS: uPlot.Axis.TimeValuesConfig = [
  [365 * 86400, '{YYYY}', null, null, null, null, null, null, 1],
  [28 * 86400, '{MMM}', '\n{YYYY}', null, null, null, null, null, 1],
  [86400, '{M}/{D}', '\n{YYYY}', null, null, null, null, null, 1],
  [3600, '{h}{aa}', '\n{M}/{D}/{YY}', null, '\n{M}/{D}', null, null, null, 1],
  [60, '{h}:{mm}{aa}', '\n{M}/{D}/{YY}', null, '\n{M}/{D}', null, null, null, 1],
  [1, ':{ss}', NL_HM, null, NL_HM, null, NL_HM, null, 1],
  [0.001, ':{ss}.{fff}', NL_HM, null, NL_HM, null, NL_HM, null, 1],
];

/**
 * Markers as elements over the plot, placed after every draw (new data,
 * zoom, resize): a canvas line could not carry a hover title, and the
 * elements let tests count what is drawn. Those outside the x range are
 * left out.
 */
function markersPlugin(get: () => Marker[] | undefined): uPlot.Plugin {
  let layer: HTMLDivElement;
  return {
    hooks: {
      init: (u) => {
        layer = document.createElement('div');
        layer.className = 'chart-markers';
        layer.setAttribute('data-testid', 'chart-markers');
        u.over.appendChild(layer);
      },
      draw: (u) => {
        const ms = get() ?? [];
        const { min, max } = u.scales.x;
        let n = 0;
        if (min !== undefined && max !== undefined) {
          for (const m of ms) {
            if (!(m.t >= min && m.t <= max)) continue;
            let el = layer.children[n] as HTMLElement | undefined;
            if (!el) {
              el = document.createElement('span');
              el.className = 'chart-marker';
              el.setAttribute('data-testid', 'chart-marker');
              layer.appendChild(el);
            }
            el.style.left = u.valToPos(m.t, 'x').toFixed(1) + 'px';
            el.style.color = m.color;
            el.title = m.title;
            el.dataset.t = String(m.t);
            n++;
          }
        }
        while (layer.children.length > n) layer.lastChild!.remove();
        layer.dataset.count = String(n);
      },
    },
  };
}

function makeOpts(p: ChartProps, width: number, _t: Theme, readout: HTMLDivElement, markers: () => Marker[] | undefined): uPlot.Options {
  const fg = css('--muted');
  const grid = css('--grid');
  const yFmt = p.yFmt ?? ((v: number) => fmtNum(v));
  const scatterPaths = () => null;
  return {
    width,
    height: p.height,
    legend: { show: false },
    cursor: {
      drag: { x: !!p.onSelectRange, y: false, setScale: false },
      focus: { prox: 16 },
      points: { size: 6 },
    },
    focus: { alpha: 0.35 },
    plugins: [markersPlugin(markers)],
    scales: { x: { time: true }, y: p.yLog ? { distr: 3 } : { auto: true } },
    series: [
      {},
      ...p.labels.map((label, i) => {
        const c = p.colors?.[i] ?? color(i);
        return {
          label,
          stroke: c,
          width: p.labels.length > 20 ? 1 : 1.25,
          show: !p.hidden?.has(i),
          spanGaps: false,
          ...(p.scatter
            ? { paths: scatterPaths, points: { show: true, size: 7, stroke: c, fill: c + '99', width: 1 } }
            : { points: { show: false } }),
        } as uPlot.Series;
      }),
    ],
    axes: [
      { stroke: fg, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid, width: 1 }, font: '11px system-ui, sans-serif', values: TIME_AXIS },
      {
        stroke: fg,
        grid: { stroke: grid, width: 1 },
        ticks: { stroke: grid, width: 1 },
        // wide enough for the longest tick label ("1.5 GiB/s")
        size: (_u: uPlot, values: string[]) => Math.max(44, 22 + 7 * Math.max(0, ...(values ?? []).map((v) => (v ?? '').length))),
        font: '11px system-ui, sans-serif',
        values: (_u, vals) => vals.map((v) => (v === null ? '' : yFmt(v))),
      },
    ],
    hooks: {
      setSelect: [
        (u) => {
          if (!p.onSelectRange || u.select.width < 4) return;
          const from = u.posToVal(u.select.left, 'x');
          const to = u.posToVal(u.select.left + u.select.width, 'x');
          u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
          p.onSelectRange(from, to);
        },
      ],
      setCursor: [
        (u) => {
          const idx = u.cursor.idx;
          if (idx === null || idx === undefined || u.cursor.left === undefined || u.cursor.left < 0) {
            readout.style.display = 'none';
            return;
          }
          const x = u.data[0][idx];
          const rows: [number, number][] = [];
          for (let s = 1; s < u.data.length; s++) {
            const v = u.data[s][idx];
            if (v !== null && v !== undefined && u.series[s].show) rows.push([s, v as number]);
          }
          rows.sort((a, b) => b[1] - a[1]);
          const focused = (u as any).__focus as number | undefined;
          const top = rows.slice(0, 8);
          if (focused && !top.some((r) => r[0] === focused)) {
            const f = rows.find((r) => r[0] === focused);
            if (f) top.push(f);
          }
          let html = `<div class="ro-t">${fmtDateTime(x * 1000)}</div>`;
          for (const [s, v] of top) {
            const c = (u.series[s].stroke as string) || '';
            const label = String(u.series[s].label ?? '').replace(/[<&]/g, (ch) => (ch === '<' ? '&lt;' : '&amp;'));
            html += `<div class="ro-r${s === focused ? ' ro-f' : ''}"><i style="background:${c}"></i><span class="ro-l">${label}</span><b>${yFmt(v)}</b></div>`;
          }
          if (rows.length > top.length) html += `<div class="ro-more">+${rows.length - top.length} more</div>`;
          readout.innerHTML = html;
          readout.style.display = 'block';
          const left = u.cursor.left + 70;
          const w = readout.offsetWidth;
          readout.style.left = (left + w + 20 > u.over.clientWidth + 60 ? left - w - 30 : left + 10) + 'px';
        },
      ],
      setSeries: [
        (u, sidx) => {
          (u as any).__focus = sidx ?? undefined;
        },
      ],
    },
  };
}

/** A time-series chart; width follows its container, height is fixed. */
export function Chart(p: ChartProps) {
  const box = useRef<HTMLDivElement>(null);
  const readout = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  const t = useStore(theme);
  const shape = p.labels.join('\u0000') + '|' + (p.scatter ? 's' : 'l') + '|' + p.height + '|' + t + '|' + (p.yLog ? 'log' : '');
  const props = useRef(p);
  props.current = p;

  useLayoutEffect(() => {
    const el = box.current!;
    const u = new uPlot(makeOpts(p, Math.max(100, el.clientWidth), t, readout.current!, () => props.current.markers), p.data as uPlot.AlignedData, el);
    plot.current = u;
    if (p.onPointClick) {
      u.over.addEventListener('click', () => {
        const idx = u.cursor.idx;
        if (idx === null || idx === undefined) return;
        const focused = (u as any).__focus as number | undefined;
        let s = focused ?? -1;
        if (s < 0) for (let k = 1; k < u.data.length; k++) if (u.data[k][idx] !== null && u.data[k][idx] !== undefined) s = k;
        props.current.onPointClick?.(idx, s);
      });
    }
    const ro = new ResizeObserver(() => {
      const w = el.clientWidth;
      if (w > 0 && Math.abs(w - u.width) > 1) u.setSize({ width: w, height: p.height });
    });
    ro.observe(el);
    return () => {
      ro.disconnect();
      u.destroy();
      plot.current = null;
    };
  }, [shape]);

  useEffect(() => {
    const u = plot.current;
    if (!u) return;
    u.setData(p.data as uPlot.AlignedData, true);
  }, [p.data]);

  // By content: pages build their markers anew on every render.
  const marks = (p.markers ?? []).map((m) => `${m.t} ${m.color} ${m.title}`).join('\n');
  useEffect(() => {
    plot.current?.redraw(false);
  }, [marks]);

  useEffect(() => {
    const u = plot.current;
    if (!u) return;
    for (let i = 1; i < u.series.length; i++) {
      const show = !p.hidden?.has(i - 1);
      if (u.series[i].show !== show) u.setSeries(i, { show });
    }
  }, [p.hidden, shape]);

  return (
    <div class="chart" style={{ height: p.height + 'px' }} data-testid={p.testId}>
      <div ref={box} class="chart-plot" />
      <div ref={readout} class="readout" />
    </div>
  );
}

/** A tiny line without axes, as SVG: cheap enough for dozens per page. `xs` (seconds) places `markers`. */
export function Sparkline({ values, height = 28, stroke = PALETTE[0], fill = true, max, xs, markers }: { values: (number | null)[]; height?: number; stroke?: string; fill?: boolean; max?: number; xs?: (number | null)[]; markers?: Marker[] }) {
  const w = 120;
  const n = values.length;
  let lo = 0;
  let hi = max ?? 0;
  for (const v of values) if (v !== null && isFinite(v)) hi = Math.max(hi, v);
  if (hi <= lo) hi = lo + 1;
  const pts: string[] = [];
  let d = '';
  let started = false;
  let firstX = 0;
  let lastX = 0;
  for (let i = 0; i < n; i++) {
    const v = values[i];
    const x = n > 1 ? (i / (n - 1)) * w : 0;
    if (v === null || !isFinite(v)) {
      started = false;
      continue;
    }
    const y = height - 1 - ((v - lo) / (hi - lo)) * (height - 3);
    d += `${started ? 'L' : 'M'}${x.toFixed(1)},${y.toFixed(1)}`;
    if (!pts.length) firstX = x;
    lastX = x;
    pts.push(`${x.toFixed(1)},${y.toFixed(1)}`);
    started = true;
  }
  const x0 = xs?.[0];
  const x1 = xs?.[n - 1];
  const marks = markers && x0 != null && x1 != null && x1 > x0 ? markers.filter((m) => m.t >= x0 && m.t <= x1) : [];
  return (
    <svg class="spark" viewBox={`0 0 ${w} ${height}`} preserveAspectRatio="none" height={height} role="img" data-markers={marks.length || undefined}>
      {fill && pts.length > 1 && <path d={`M${firstX},${height}L${pts.join('L')}L${lastX},${height}Z`} fill={stroke} opacity="0.15" />}
      {d && <path d={d} fill="none" stroke={stroke} stroke-width="1.5" vector-effect="non-scaling-stroke" />}
      {marks.map((m, i) => {
        const x = (((m.t - x0!) / (x1! - x0!)) * w).toFixed(1);
        return (
          <g key={i} class="spark-marker" data-testid="spark-marker" data-t={m.t}>
            <title>{m.title}</title>
            <line x1={x} x2={x} y1={0} y2={height} stroke={m.color} stroke-width="1.5" vector-effect="non-scaling-stroke" />
            {/* a wider invisible line, so the title is reachable with a mouse */}
            <line x1={x} x2={x} y1={0} y2={height} stroke="transparent" stroke-width="7" vector-effect="non-scaling-stroke" />
          </g>
        );
      })}
    </svg>
  );
}
