// What every page shares: the time range and refresh (in the URL, so a
// link shows the same thing), the theme, and the refresh ticker.
import { useEffect, useState } from 'preact/hooks';
import { Store } from './store';
import { useRoute } from './router';
import { bounds, parseDur } from './time';

export const DEFAULT_RANGE = '15m';
export const DEFAULT_REFRESH = '1s';

export function useRange(): { range: string; refresh: string } {
  const { query } = useRoute();
  return { range: query.get('range') || DEFAULT_RANGE, refresh: query.get('refresh') || DEFAULT_REFRESH };
}

export type Theme = 'dark' | 'light';
export const theme = new Store<Theme>((document.documentElement.dataset.theme as Theme) || 'dark');
theme.subscribe((t) => {
  document.documentElement.dataset.theme = t;
  try {
    localStorage.setItem('sonde.theme', t);
  } catch {
    /* private mode */
  }
});

const visible = new Store<boolean>(!document.hidden);
document.addEventListener('visibilitychange', () => visible.set(!document.hidden));

/**
 * A counter that goes up every refresh interval while the range is
 * relative (live), refresh is on and the tab is visible. Pages re-fetch
 * (or fetch the newest window) when it changes.
 */
export function useTick(): number {
  const { range, refresh } = useRange();
  const [tick, setTick] = useState(0);
  const [vis, setVis] = useState(visible.get());
  useEffect(() => visible.subscribe(setVis), []);
  useEffect(() => {
    const every = refresh === 'off' ? null : parseDur(refresh);
    if (!every || !bounds(range).live || !vis) return;
    const id = setInterval(() => setTick((t) => t + 1), every * 1000);
    return () => clearInterval(id);
  }, [range, refresh, vis]);
  return tick;
}
