// What the CLI shares with the console: the gateway client and its API calls.
export * from "./admin-api.ts";
export * from "./chat.ts";
export * from "./daily-usage.ts";
export * from "./gateway-client.ts";
export * from "./gateway-error.ts";
export * from "./tenant-api.ts";
export type * from "./types.ts";
export * from "./usage-csv.ts";
export * from "./usage-report.ts";
