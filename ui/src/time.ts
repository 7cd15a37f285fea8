// Time ranges ("15m" relative to now, or "1700000000-1700003600" absolute,
// in seconds) and formatting.

export const RANGES = ['5m', '15m', '1h', '3h', '6h', '12h', '24h', '7d'];
export const REFRESH = ['off', '1s', '5s', '15s', '1m'];

const UNIT: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86400, w: 604800 };

/** Seconds in a duration like 90s, 15m, 1h; null when not one. */
export function parseDur(s: string): number | null {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d|w)$/.exec(s.trim());
  if (!m) return null;
  if (m[2] === 'ms') return Number(m[1]) / 1000;
  return Number(m[1]) * UNIT[m[2]];
}

export interface Bounds {
  start: number;
  end: number;
  live: boolean;
}

export function bounds(range: string, now = Date.now() / 1000): Bounds {
  const abs = /^(\d+(?:\.\d+)?)-(\d+(?:\.\d+)?)$/.exec(range);
  if (abs) return { start: Number(abs[1]), end: Number(abs[2]), live: false };
  const d = parseDur(range) ?? 3600;
  return { start: now - d, end: now, live: true };
}

export function rangeLabel(range: string): string {
  const abs = /^(\d+(?:\.\d+)?)-(\d+(?:\.\d+)?)$/.exec(range);
  if (!abs) return `Last ${range}`;
  return `${fmtDateTime(Number(abs[1]) * 1000)} → ${fmtDateTime(Number(abs[2]) * 1000)}`;
}

const NICE_STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 43200, 86400];
/** A round step giving about `points` points over `seconds`. */
export function niceStep(seconds: number, points = 720): number {
  const raw = seconds / points;
  return NICE_STEPS.find((s) => s >= raw) ?? Math.ceil(raw / 86400) * 86400;
}

const pad = (n: number, w = 2) => String(n).padStart(w, '0');

export function fmtTime(ms: number, withMs = false): string {
  const d = new Date(ms);
  const s = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  return withMs ? `${s}.${pad(d.getMilliseconds(), 3)}` : s;
}

export function fmtDateTime(ms: number): string {
  const d = new Date(ms);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${fmtTime(ms)}`;
}

export function nsToMs(ns: string | number): number {
  return typeof ns === 'number' ? ns / 1e6 : Number(BigInt(ns) / 1000n) / 1000;
}

export function fmtDurationNs(ns: number): string {
  if (!isFinite(ns)) return '–';
  if (ns < 1e3) return `${ns.toFixed(0)}ns`;
  if (ns < 1e6) return `${(ns / 1e3).toFixed(ns < 1e4 ? 1 : 0)}µs`;
  if (ns < 1e9) return `${(ns / 1e6).toFixed(ns < 1e7 ? 2 : ns < 1e8 ? 1 : 0)}ms`;
  if (ns < 60e9) return `${(ns / 1e9).toFixed(2)}s`;
  return `${(ns / 60e9).toFixed(1)}m`;
}

export function fmtSeconds(s: number): string {
  return fmtDurationNs(s * 1e9);
}

export function fmtNum(v: number | null | undefined, digits = 3): string {
  if (v === null || v === undefined || Number.isNaN(v)) return '–';
  if (!isFinite(v)) return v > 0 ? '+Inf' : '-Inf';
  const a = Math.abs(v);
  if (a === 0) return '0';
  if (a >= 1e9) return (v / 1e9).toFixed(2) + 'G';
  if (a >= 1e6) return (v / 1e6).toFixed(2) + 'M';
  if (a >= 1e4) return (v / 1e3).toFixed(1) + 'k';
  if (a >= 100) return v.toFixed(0);
  if (a >= 1) return v.toFixed(2);
  return v.toPrecision(digits);
}

/** A count: 12, 1.2k, 3.4M; never decimals below 10k. */
export function fmtCount(v: number | null | undefined): string {
  if (v === null || v === undefined || !isFinite(v)) return '–';
  return Math.abs(v) < 1e4 ? String(Math.round(v)) : fmtNum(v);
}

export function fmtBytes(v: number | null | undefined): string {
  if (v === null || v === undefined || !isFinite(v)) return '–';
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let x = Math.abs(v);
  while (x >= 1024 && i < u.length - 1) {
    x /= 1024;
    i++;
  }
  return `${v < 0 ? '-' : ''}${x.toFixed(x >= 100 || i === 0 ? 0 : 1)} ${u[i]}`;
}

export function fmtPct(v: number | null | undefined): string {
  if (v === null || v === undefined || !isFinite(v)) return '–';
  return `${(v * 100).toFixed(v < 0.1 ? 2 : 1)}%`;
}

export function ago(ms: number, now = Date.now()): string {
  const s = Math.max(0, (now - ms) / 1000);
  if (s < 2) return 'just now';
  if (s < 60) return `${Math.floor(s)}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ago`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ago`;
  return `${Math.floor(s / 86400)}d ago`;
}
