import type { AdapterMeta, AdapterResolver } from "../adapters/adapter-resolver.ts";
import type { Principal } from "../auth/principal.ts";
import type { Env } from "../env.ts";
import { ApiError } from "../errors.ts";
import { LruCache } from "../lru.ts";
import { retryD1 } from "../storage/d1-retry.ts";

export type ModelTarget = { baseModel: string; adapter: AdapterMeta | null };

/**
 * What the OpenAI `model` field names for a tenant: an allowed base model, the
 * tenant's adapter `name`, or `tenant-name/name`. Anything else, including
 * another tenant's adapter, is the same 404 as a model that does not exist.
 */
export class ModelResolver {
  readonly #adapters: AdapterResolver;
  readonly #baseModels: LruCache<string[]>;

  constructor(adapters: AdapterResolver, now: () => number = Date.now) {
    this.#adapters = adapters;
    this.#baseModels = new LruCache(1, 10_000, now);
  }

  /** Base models this tenant may call: those registered, narrowed by its allow list when it has one. */
  async baseModels(env: Env, principal: Principal): Promise<string[]> {
    let all = this.#baseModels.get("all");
    if (all === undefined) {
      const { results } = await retryD1(() =>
        env.DB.prepare("SELECT name FROM base_models").all<{ name: string }>(),
      );
      all = results.map((r) => r.name);
      this.#baseModels.set("all", all);
    }
    const allowed = principal.allowedBaseModels;
    return allowed.length === 0 ? all : all.filter((m) => allowed.includes(m));
  }

  /** Forgets the base model list after the admin API changed it. */
  invalidate(): void {
    this.#baseModels.clear();
  }

  async resolve(env: Env, principal: Principal, model: string): Promise<ModelTarget> {
    if ((await this.baseModels(env, principal)).includes(model))
      return { baseModel: model, adapter: null };
    const ownPrefix = `${principal.tenantName}/`;
    const name = model.startsWith(ownPrefix) ? model.slice(ownPrefix.length) : model;
    const adapter = name.includes("/")
      ? null
      : await this.#adapters.resolve(env, principal.tenantId, name);
    if (adapter === null) {
      throw new ApiError(
        404,
        "model_not_found",
        `The model \`${model}\` does not exist or you do not have access to it.`,
        {
          param: "model",
        },
      );
    }
    return { baseModel: adapter.baseModel, adapter };
  }
}
