-- Prefix caching (#23). The backend answers how many prompt tokens it found in its prefix
-- cache (usage.prompt_tokens_details.cached_tokens): each usage row keeps it.
ALTER TABLE usage ADD COLUMN cached_tokens INTEGER NOT NULL DEFAULT 0;
-- Which requests may share cached KV on a backend is the cache salt the gateway sends
-- (gateway/src/proxy/cache-salt.ts): by default one per API key, so a tenant's keys cannot
-- time each other's prompts (vLLM CVE-2025-46570); 1 = one salt for all the tenant's keys.
ALTER TABLE tenants ADD COLUMN share_prefix_cache INTEGER NOT NULL DEFAULT 0 CHECK (share_prefix_cache IN (0, 1));
