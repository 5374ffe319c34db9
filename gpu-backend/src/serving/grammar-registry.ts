// The grammars of unfinished requests, bound to executor grammar ids: one compile per
// distinct grammar (kind + source) while requests use it, released with its last request.
// The executor keeps compiled grammars by content beyond that (its own LRU), so a schema
// asked for again later is a cache hit there. After an executor restart every live
// grammar is compiled again under its id before the re-queued requests run.
import { ExecutorUnavailable, isGrammarRefusal } from "../executor/errors.ts";
import type { GrammarSpec } from "../protocol/messages.ts";
import { BackendUnavailableError } from "./errors.ts";
import type { ExecutorLink } from "./executor-link.ts";
import type { ServingMetrics } from "./metrics.ts";

interface Entry {
  id: number;
  key: string;
  spec: GrammarSpec;
  /** unfinished requests holding it (and acquires waiting on its compile) */
  refs: number;
  compiled: Promise<void>;
}

export class GrammarRegistry {
  readonly #link: ExecutorLink;
  readonly #metrics: ServingMetrics;
  readonly #byKey = new Map<string, Entry>();
  readonly #byId = new Map<number, Entry>();
  #nextId = 0;

  constructor(link: ExecutorLink, metrics: ServingMetrics) {
    this.#link = link;
    this.#metrics = metrics;
  }

  /** grammars held now */
  get size(): number {
    return this.#byId.size;
  }

  /**
   * The id of `spec` compiled, held until `release(id)`. Throws the executor's refusal
   * (ExecutorRequestError grammar_invalid / grammar_too_complex: a 400) or
   * BackendUnavailableError (no executor to compile it).
   *
   * @example const id = await grammars.acquire({ kind: "regex", source: "[0-9]+" });
   */
  async acquire(spec: GrammarSpec): Promise<number> {
    const key = `${spec.kind}\0${spec.source}`;
    let entry = this.#byKey.get(key);
    if (entry === undefined) {
      const id = this.#nextId;
      this.#nextId = (this.#nextId + 1) % 2 ** 31;
      entry = { id, key, spec, refs: 0, compiled: Promise.resolve() };
      entry.compiled = this.#compile(entry);
      this.#byKey.set(key, entry);
      this.#byId.set(id, entry);
    } else {
      this.#metrics.grammarCompiled(0, true);
    }
    entry.refs++;
    await entry.compiled;
    return entry.id;
  }

  /** One holder of grammar `id` is done; the last one frees it in the executor. */
  release(id: number): void {
    const entry = this.#byId.get(id);
    if (entry === undefined || --entry.refs > 0) return;
    this.#forget(entry);
    // The executor drops it in order with the steps sent before; a failed drop costs
    // the executor a binding, nothing else.
    this.#link.dropGrammar(id).catch(() => {});
  }

  /** A fresh executor knows no grammar: compiles every held one again, under its id. */
  async executorRestarted(): Promise<void> {
    const entries = [...this.#byId.values()];
    for (const entry of entries) entry.compiled = this.#compile(entry);
    await Promise.allSettled(entries.map((entry) => entry.compiled));
  }

  async #compile(entry: Entry): Promise<void> {
    try {
      const compiled = await this.#link.compileGrammar(
        entry.id,
        entry.spec.kind,
        entry.spec.source,
      );
      this.#metrics.grammarCompiled(compiled.compileMs, compiled.cached);
    } catch (error) {
      if (this.#byId.get(entry.id) === entry) this.#forget(entry);
      if (isGrammarRefusal(error)) {
        this.#metrics.grammarRefused();
        // The executor bound the id before it refused it.
        this.#link.dropGrammar(entry.id).catch(() => {});
      }
      if (error instanceof ExecutorUnavailable) throw new BackendUnavailableError(error.message);
      throw error;
    }
  }

  #forget(entry: Entry): void {
    this.#byKey.delete(entry.key);
    this.#byId.delete(entry.id);
  }
}
