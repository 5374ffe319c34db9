-- What bounds a base model's token counts, so admission reserves a bound no choice of
-- characters beats (gateway/src/limits/estimate-tokens.ts): the tokens its chat template
-- adds per message (and once per conversation), and its context (config.json
-- max_position_embeddings). Defaults as in `defaultTokenBounds`.
ALTER TABLE base_models ADD COLUMN template_tokens_per_message INTEGER NOT NULL DEFAULT 64;
ALTER TABLE base_models ADD COLUMN max_position_embeddings INTEGER NOT NULL DEFAULT 131072;
