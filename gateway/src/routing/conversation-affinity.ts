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
 * Orders backends for one request of a conversation (prefix affinity): the adapter's home
 * backends (its first `adapterHomeBackends` in its rendezvous order; all of them for a
 * base-model request) in the conversation's rendezvous order, then the adapter's other
 * backends in the adapter's order; then bounded load moves those at or over their bound
 * behind the others (rendezvous.ts `boundLoad`). So every turn of a conversation goes to
 * the same backend, where its prefix is cached, as long as that one has room and answers;
 * different conversations of one adapter spread over its home backends; and an overloaded
 * or failed backend's conversations go to the next in their order (the adapter's other
 * home backend first), the same one for every turn while it lasts.
 *
 * @example rankForConversation(conversationKey(salt, "ad_1", "m", head), candidates)[0]
 */
export function rankForConversation<B extends RoutableBackend>(
  key: ConversationKey,
  backends: readonly B[],
): B[] {
  const byAdapter = key.adapter === null ? [...backends] : preferenceOrder(key.adapter, backends);
  const home = byAdapter.slice(0, key.adapter === null ? byAdapter.length : adapterHomeBackends);
  const ordered = [...preferenceOrder(key.conversation, home), ...byAdapter.slice(home.length)];
  return boundLoad(ordered, backends);
}
