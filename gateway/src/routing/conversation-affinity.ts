import { boundLoad, hash32, preferenceOrder, type RoutableBackend } from "./rendezvous.ts";

/**
 * How many backends one adapter's conversations spread over (its "home" backends: the
 * first of the adapter's rendezvous order). One would pile every conversation of a hot
 * adapter onto one backend; every backend would load every adapter and batch it with few
 * of its requests (S-LoRA's point is many requests of few adapters per batch). Two keep an
 * adapter on two backends while its conversations, and their cached prefixes, spread.
 */
export const adapterHomeBackends = 2;

/** What routes a request of a conversation. */
export type ConversationKey = {
  /** The adapter's id; null for a base-model request (every backend holds the base). */
  adapter: string | null;
  /**
   * Requests that could share cached KV, and share a head: the cache salt (one per key or,
   * opted in, per tenant: requests of other salts never share pages), the model (adapter
   * id or base model: the backend's cache is keyed by it too) and a hash of the
   * conversation's head (conversation-head.ts).
   */
  conversation: string;
};

/**
 * The routing key of a request whose conversation begins with `head`.
 *
 * @example conversationKey(salt, "ad_1", "tiny-llama", conversationHead(body))
 */
export function conversationKey(
  cacheSalt: string,
  adapterId: string | null,
  baseModel: string,
  head: string,
): ConversationKey {
  const model = adapterId ?? `base:${baseModel}`;
  return {
    adapter: adapterId,
    conversation: `${cacheSalt}\u0000${model}\u0000${hash32(head).toString(16)}`,
  };
}

/**
 * Orders backends for one request of a conversation (prefix affinity). The first is the
 * conversation's pick (its rendezvous order) among the adapter's home backends: the first
 * `adapterHomeBackends` of the adapter's rendezvous order (all backends, for a base-model
 * request); each next one is picked the same way among the backends not yet ordered, so the
 * order without its first backend is the order the backends without it give: a request
 * that fails over lands where the conversation's next turns go while that backend is out.
 * Then bounded load moves those at or over their bound behind the others (rendezvous.ts
 * `boundLoad`). So every turn of a conversation goes to the same backend, where its prefix
 * is cached, as long as that one has room and answers; the conversations of one adapter
 * spread over its home backends, and the adapter stays on those.
 *
 * @example rankForConversation(conversationKey(salt, "ad_1", "m", head), candidates)[0]
 */
export function rankForConversation<B extends RoutableBackend>(
  key: ConversationKey,
  backends: readonly B[],
): B[] {
  const homeSize = key.adapter === null ? backends.length : adapterHomeBackends;
  const left = key.adapter === null ? [...backends] : preferenceOrder(key.adapter, backends);
  const rank = new Map(preferenceOrder(key.conversation, backends).map((b, i) => [b, i]));
  const byRank = (a: B, b: B) => ((rank.get(a) ?? 0) <= (rank.get(b) ?? 0) ? a : b);
  const ordered: B[] = [];
  for (let next = left[0]; next !== undefined; next = left[0]) {
    const picked = left.slice(0, homeSize).reduce(byRank, next);
    ordered.push(picked);
    left.splice(left.indexOf(picked), 1);
  }
  return boundLoad(ordered, backends);
}
