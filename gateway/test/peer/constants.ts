/** Secrets the test Worker is configured with (vitest.config.ts) and the test peer expects. */
export const testSecrets = {
  adminToken: "test-admin-token-0123456789abcdef",
  urlSigningKey: "test-signing-key-0123456789abcdef",
  backendSecret: "test-backend-secret-0123456789",
} as const;
