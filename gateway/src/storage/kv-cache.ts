// KV is a cache in front of D1 (the source of truth): when it fails, the request goes on
// with D1 instead of failing. A failed put only costs a later D1 read.

function warn(op: string, key: string, error: unknown): void {
  // Only the entry's kind ("key", "adapter"): an API key's hash stays out of logs too.
  const kind = key.split(":")[0];
  console.warn(
    JSON.stringify({ level: "warn", event: "kv_error", op, kind, message: String(error) }),
  );
}

/** The cached JSON value, or null when absent or when KV fails. */
export async function kvGetJson<T>(kv: KVNamespace, key: string): Promise<T | null> {
  try {
    return await kv.get<T>(key, "json");
  } catch (error) {
    warn("get", key, error);
    return null;
  }
}

/** Caches `value` for `ttlSeconds`; a KV failure is logged and ignored. */
export async function kvPutJson(
  kv: KVNamespace,
  key: string,
  value: unknown,
  ttlSeconds: number,
): Promise<void> {
  try {
    await kv.put(key, JSON.stringify(value), { expirationTtl: ttlSeconds });
  } catch (error) {
    warn("put", key, error);
  }
}
