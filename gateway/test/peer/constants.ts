/**
 * Secrets the test Worker is configured with (vitest.config.ts). `backendSecret` is its
 * BACKEND_SECRET: each virtual backend of the test peer expects the secret derived from it.
 */
export const testSecrets = {
  adminToken: "test-admin-token-0123456789abcdef",
  urlSigningKey: "test-signing-key-0123456789abcdef",
  backendSecret: "test-backend-secret-0123456789",
} as const;
