/**
 * A small typed event emitter. Listeners run synchronously in registration order; one that
 * throws does not stop the others. As with DOM events, its exception is reported with
 * `reportError` (where there is none, thrown from a fresh task), so it shows up as an
 * uncaught error instead of vanishing.
 */

/** Removes the listener it was returned for. */
export type Unsubscribe = () => void;

/** Emits events of `Events` (event names mapped to the type of their argument). */
export class Emitter<Events extends { [K in keyof Events]: unknown }> {
  #listeners = new Map<keyof Events, Set<(arg: never) => void>>();

  /** Calls `listener` for every `event`; returns a function that stops it. */
  on<K extends keyof Events>(event: K, listener: (arg: Events[K]) => void): Unsubscribe {
    let set = this.#listeners.get(event);
    if (!set) {
      set = new Set();
      this.#listeners.set(event, set);
    }
    set.add(listener as (arg: never) => void);
    return () => this.off(event, listener);
  }

  /** Calls `listener` for the next `event` only. */
  once<K extends keyof Events>(event: K, listener: (arg: Events[K]) => void): Unsubscribe {
    const off = this.on(event, (arg) => {
      off();
      listener(arg);
    });
    return off;
  }

  /** Stops calling `listener` for `event`. */
  off<K extends keyof Events>(event: K, listener: (arg: Events[K]) => void): void {
    this.#listeners.get(event)?.delete(listener as (arg: never) => void);
  }

  /** Whether anyone listens to `event`. */
  has(event: keyof Events): boolean {
    return (this.#listeners.get(event)?.size ?? 0) > 0;
  }

  /** Calls every listener of `event` with `arg`. */
  emit<K extends keyof Events>(event: K, arg: Events[K]): void {
    const set = this.#listeners.get(event);
    if (!set) return;
    for (const listener of [...set]) {
      try {
        (listener as (arg: Events[K]) => void)(arg);
      } catch (e) {
        report(e);
      }
    }
  }
}

function report(e: unknown): void {
  const reportError = (globalThis as { reportError?: (e: unknown) => void }).reportError;
  if (typeof reportError === "function") {
    reportError(e);
  } else {
    setTimeout(() => {
      throw e;
    }, 0);
  }
}
