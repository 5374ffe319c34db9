import { execFileSync } from "node:child_process";

/**
 * The commit a CPU figure is measured at: git's HEAD, or LORAFLEET_GIT_SHA where the tree
 * has no usable .git (the GPU machine's copy).
 */
export function currentGitSha(repoRoot: string): string | null {
  try {
    return execFileSync("git", ["rev-parse", "HEAD"], { cwd: repoRoot, encoding: "utf8" }).trim();
  } catch {
    return process.env.LORAFLEET_GIT_SHA ?? null;
  }
}
