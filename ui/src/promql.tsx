// The PromQL editor: a textarea with completion of metric names, label
// names and label values (from the Prometheus API), functions and keywords.
import { useEffect, useRef, useState } from 'preact/hooks';
import { cached, metricNames } from './api';

const FUNCTIONS = [
  'abs', 'absent', 'absent_over_time', 'avg_over_time', 'ceil', 'changes', 'clamp', 'clamp_max', 'clamp_min', 'count_over_time',
  'day_of_month', 'day_of_week', 'delta', 'deriv', 'exp', 'floor', 'histogram_quantile', 'histogram_count', 'histogram_sum',
  'holt_winters', 'hour', 'idelta', 'increase', 'irate', 'label_join', 'label_replace', 'last_over_time', 'ln', 'log2', 'log10',
  'max_over_time', 'min_over_time', 'minute', 'month', 'predict_linear', 'present_over_time', 'quantile_over_time', 'rate',
  'resets', 'round', 'scalar', 'sgn', 'sort', 'sort_desc', 'sqrt', 'stddev_over_time', 'sum_over_time', 'time', 'timestamp', 'vector', 'year',
];
const AGGREGATIONS = ['sum', 'avg', 'min', 'max', 'count', 'count_values', 'group', 'stddev', 'stdvar', 'topk', 'bottomk', 'quantile', 'limitk', 'limit_ratio'];
const KEYWORDS = ['by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'offset', 'bool', 'and', 'or', 'unless'];

interface Item {
  label: string;
  kind: 'metric' | 'function' | 'aggregation' | 'keyword' | 'label' | 'value';
  insert: string;
}

interface Context {
  kind: 'name' | 'label' | 'value';
  prefix: string;
  from: number;
  metric?: string;
  label?: string;
  quoted?: boolean;
}

/** What to complete at `pos` in `text`. */
export function contextAt(text: string, pos: number): Context | null {
  const before = text.slice(0, pos);
  const open = before.lastIndexOf('{');
  const close = before.lastIndexOf('}');
  if (open > close) {
    const metric = /([a-zA-Z_:][a-zA-Z0-9_:]*)\s*$/.exec(before.slice(0, open))?.[1];
    const inside = before.slice(open + 1);
    // inside a quoted value?
    let q = false;
    for (let i = 0; i < inside.length; i++) {
      if (inside[i] === '\\') i++;
      else if (inside[i] === '"') q = !q;
    }
    const m = /([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"?([^"]*)$/.exec(inside);
    if (m && (q || !/"/.test(inside.slice(inside.lastIndexOf(m[2]) + m[2].length)))) {
      const prefix = m[3];
      return { kind: 'value', prefix, from: pos - prefix.length, metric, label: m[1], quoted: q };
    }
    const l = /(^|[,{\s])([a-zA-Z_][a-zA-Z0-9_]*)?$/.exec(inside);
    if (l && !q) {
      const prefix = l[2] ?? '';
      return { kind: 'label', prefix, from: pos - prefix.length, metric };
    }
    return null;
  }
  const grouping = /\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)$/.exec(before);
  if (grouping) {
    const prefix = /([a-zA-Z_][a-zA-Z0-9_]*)?$/.exec(grouping[2])?.[1] ?? '';
    return { kind: 'label', prefix, from: pos - prefix.length };
  }
  if (/\[[^\]]*$/.test(before)) return null; // a range duration
  const w = /([a-zA-Z_:][a-zA-Z0-9_:]*)$/.exec(before);
  if (!w) return null;
  return { kind: 'name', prefix: w[1], from: pos - w[1].length };
}

async function candidates(c: Context): Promise<Item[]> {
  const p = c.prefix.toLowerCase();
  const match = (s: string) => s.toLowerCase().includes(p);
  const rank = (a: Item, b: Item) => {
    const as = a.label.toLowerCase().startsWith(p) ? 0 : 1;
    const bs = b.label.toLowerCase().startsWith(p) ? 0 : 1;
    return as - bs || a.label.length - b.label.length || (a.label < b.label ? -1 : 1);
  };
  if (c.kind === 'name') {
    const names = await metricNames().catch(() => [] as string[]);
    const items: Item[] = [
      ...names.filter(match).map((n) => ({ label: n, kind: 'metric' as const, insert: n })),
      ...FUNCTIONS.filter(match).map((n) => ({ label: n, kind: 'function' as const, insert: n + '(' })),
      ...AGGREGATIONS.filter(match).map((n) => ({ label: n, kind: 'aggregation' as const, insert: n + ' ' })),
      ...KEYWORDS.filter(match).map((n) => ({ label: n, kind: 'keyword' as const, insert: n + ' ' })),
    ];
    return items.sort(rank).slice(0, 50);
  }
  const m = c.metric ? { 'match[]': `{__name__="${c.metric}"}` } : undefined;
  if (c.kind === 'label') {
    const labels = await cached<string[]>('/api/v1/labels', m).catch(() => [] as string[]);
    return labels
      .filter((l) => l !== '__name__' && match(l))
      .map((l) => ({ label: l, kind: 'label' as const, insert: l }))
      .sort(rank)
      .slice(0, 50);
  }
  const values = await cached<string[]>(`/api/v1/label/${encodeURIComponent(c.label!)}/values`, m).catch(() => [] as string[]);
  return values
    .filter(match)
    .map((v) => {
      const esc = v.replace(/\\/g, '\\\\').replace(/"/g, '\\"');
      return { label: v, kind: 'value' as const, insert: c.quoted ? esc + '"' : `"${esc}"` };
    })
    .sort(rank)
    .slice(0, 50);
}

export function PromQLEditor({ value, onChange, onRun, placeholder }: { value: string; onChange: (v: string) => void; onRun: (v: string) => void; placeholder?: string }) {
  const ta = useRef<HTMLTextAreaElement>(null);
  const [items, setItems] = useState<Item[]>([]);
  const [sel, setSel] = useState(0);
  const [ctx, setCtx] = useState<Context | null>(null);
  const seq = useRef(0);

  const refresh = (text: string, pos: number, explicit = false) => {
    const c = contextAt(text, pos);
    const n = ++seq.current;
    if (!c || (!explicit && c.kind === 'name' && c.prefix.length < 1)) {
      setItems([]);
      setCtx(null);
      return;
    }
    candidates(c).then((list) => {
      if (n !== seq.current) return;
      // Nothing to offer when the only candidate is what is typed already.
      const useful = list.filter((i) => i.insert.replace(/["(\s]+$/, '') !== c.prefix || list.length > 1);
      setItems(useful);
      setCtx(c);
      setSel(0);
    });
  };

  const accept = (it: Item) => {
    if (!ctx) return;
    const el = ta.current!;
    const pos = el.selectionStart;
    // Replace the whole word under the cursor, not only its prefix.
    const after = value.slice(pos);
    const rest = ctx.kind === 'value' ? /^[^"]*"?/.exec(after)![0] : /^[a-zA-Z0-9_:]*/.exec(after)![0];
    const text = value.slice(0, ctx.from) + it.insert + after.slice(rest.length);
    const caret = ctx.from + it.insert.length;
    onChange(text);
    setItems([]);
    setCtx(null);
    requestAnimationFrame(() => {
      el.focus();
      el.setSelectionRange(caret, caret);
    });
  };

  const onKey = (e: KeyboardEvent) => {
    if (e.key === 'Enter' && (e.ctrlKey || e.metaKey || (!items.length && !e.shiftKey))) {
      e.preventDefault();
      setItems([]);
      onRun(value);
      return;
    }
    if (e.key === ' ' && e.ctrlKey) {
      e.preventDefault();
      refresh(value, ta.current!.selectionStart, true);
      return;
    }
    if (!items.length) return;
    if (e.key === 'ArrowDown') {
      e.preventDefault();
      setSel((s) => (s + 1) % items.length);
    } else if (e.key === 'ArrowUp') {
      e.preventDefault();
      setSel((s) => (s - 1 + items.length) % items.length);
    } else if (e.key === 'Tab' || e.key === 'Enter') {
      e.preventDefault();
      accept(items[sel]);
    } else if (e.key === 'Escape') {
      e.preventDefault();
      e.stopPropagation();
      setItems([]);
    }
  };

  useEffect(() => {
    const el = ta.current;
    if (!el) return;
    el.style.height = 'auto';
    el.style.height = Math.min(200, Math.max(38, el.scrollHeight + 2)) + 'px';
  }, [value]);

  return (
    <div class="promql">
      <textarea
        ref={ta}
        data-search
        data-testid="promql"
        class="mono"
        spellcheck={false}
        rows={1}
        value={value}
        placeholder={placeholder ?? 'PromQL, e.g. sum by (job) (rate(http_server_request_duration_seconds_count[1m]))'}
        aria-label="PromQL query"
        aria-autocomplete="list"
        aria-expanded={items.length > 0}
        onInput={(e) => {
          const el = e.target as HTMLTextAreaElement;
          onChange(el.value);
          refresh(el.value, el.selectionStart);
        }}
        onKeyDown={onKey}
        onBlur={() => setTimeout(() => setItems([]), 150)}
      />
      {items.length > 0 && (
        <ul class="completions" role="listbox" data-testid="completions">
          {items.map((it, i) => (
            <li
              key={it.kind + it.label}
              role="option"
              aria-selected={i === sel}
              class={i === sel ? 'sel' : ''}
              onMouseDown={(e) => {
                e.preventDefault();
                accept(it);
              }}
            >
              <span class={'ck ck-' + it.kind}>{it.kind[0]}</span>
              <span class="mono">{it.label}</span>
              <span class="muted small">{it.kind}</span>
            </li>
          ))}
        </ul>
      )}
    </div>
  );
}
