// A tiny observable value and its Preact hook.
import { useEffect, useState } from 'preact/hooks';

export class Store<T> {
  private subs = new Set<(v: T) => void>();
  constructor(private value: T) {}
  get() {
    return this.value;
  }
  set(v: T) {
    this.value = v;
    this.subs.forEach((f) => f(v));
  }
  update(f: (v: T) => T) {
    this.set(f(this.value));
  }
  subscribe(f: (v: T) => void) {
    this.subs.add(f);
    return () => {
      this.subs.delete(f);
    };
  }
}

export function useStore<T>(s: Store<T>): T {
  const [v, setV] = useState(s.get());
  useEffect(() => {
    setV(s.get());
    return s.subscribe(setV);
  }, [s]);
  return v;
}
