import type { AdapterMeta, AdapterResolver } from "../adapters/adapter-resolver.ts";
import type { Principal } from "../auth/principal.ts";
import type { Env } from "../env.ts";
import { ApiError } from "../errors.ts";
import { defaultTokenBounds, type TokenBounds } from "../limits/estimate-tokens.ts";
import { LruCache } from "../lru.ts";
import { retryD1 } from "../storage/d1-retry.ts";

/** What a request's `model` names: its base model (with that model's token bounds) and adapter. */
export type ModelTarget = { baseModel: string; bounds: TokenBounds; adapter: AdapterMeta | null };

type BaseModelRow = {
  name: string;
  template_tokens_per_message: number;
  max_position_embeddings: number;
};

/**
 * What the OpenAI `model` field names for a tenant: an allowed base model, the
 * tenant's adapter `name`, or `tenant-name/name`. Anything else, including
 * another tenant's adapter, is the same 404 as a model that does not exist.
 */
export class ModelResolver {
  readonly #adapters: AdapterResolver;
  readonly #baseModels: LruCache<Map<string, TokenBounds>>;

  constructor(adapters: AdapterResolver, now: () => number = Date.now) {
    this.#adapters = adapters;
    this.#baseModels = new LruCache(1, 10_000, now);
  }

  /** Every registered base model with its token bounds. */
  async #all(env: Env): Promise<Map<string, TokenBounds>> {
    let all = this.#baseModels.get("all");
    if (all === undefined) {
      const { results } = await retryD1(() =>
        env.DB.prepare(
          "SELECT name, template_tokens_per_message, max_position_embeddings FROM base_models",
        ).all<BaseModelRow>(),
      );
      all = new Map(
        results.map((r) => [
          r.name,
          {
            templateTokensPerMessage: r.template_tokens_per_message,
            contextLength: r.max_position_embeddings,
          },
        ]),
      );
      this.#baseModels.set("all", all);
    }
    return all;
  }

  /** Base models this tenant may call: those registered, narrowed by its allow list when it has one. */
  async baseModels(env: Env, principal: Principal): Promise<string[]> {
    const all = [...(await this.#all(env)).keys()];
    const allowed = principal.allowedBaseModels;
    return allowed.length === 0 ? all : all.filter((m) => allowed.includes(m));
  }

  /** Forgets the base model list after the admin API changed it. */
  invalidate(): void {
    this.#baseModels.clear();
  }

  async resolve(env: Env, principal: Principal, model: string): Promise<ModelTarget> {
    const bases = await this.#all(env);
    const boundsOf = (name: string) => bases.get(name) ?? defaultTokenBounds;
    if ((await this.baseModels(env, principal)).includes(model))
      return { baseModel: model, bounds: boundsOf(model), adapter: null };
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
    return { baseModel: adapter.baseModel, bounds: boundsOf(adapter.baseModel), adapter };
  }
}
