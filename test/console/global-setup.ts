import type { TestProject } from "vitest/node";
import { haveFixtures } from "../backend/backend-process.ts";
import { type Stack, type StackInfo, startStack } from "./stack.ts";

declare module "vitest" {
  export interface ProvidedContext {
    stack: StackInfo;
  }
}

let stack: Stack | null = null;

/** One stack for every console test file (browser and CLI): starting it is the slow part. */
export async function setup(project: TestProject) {
  if (!haveFixtures) {
    throw new Error("the model fixtures are missing (.cache/fixtures): run `npm run models`");
  }
  stack = await startStack();
  const { stop: _stop, ...info } = stack;
  project.provide("stack", info);
}

export async function teardown() {
  await stack?.stop();
}
