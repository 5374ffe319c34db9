// Makes sure Debian's Chromium is installed for the console's browser tests.
// As root it runs `apt-get install -y chromium` when /usr/bin/chromium is missing;
// otherwise it says why the browser tests will be skipped. Never fails the set-up.
//   node test/console/ensure-chromium.mjs
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";

export const chromiumPath = "/usr/bin/chromium";

function apt(args) {
  const result = spawnSync("apt-get", args, {
    stdio: "inherit",
    env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" },
  });
  return result.status === 0;
}

if (existsSync(chromiumPath)) {
  process.stdout.write(`chromium: ${chromiumPath} is installed\n`);
} else if (process.getuid?.() !== 0) {
  process.stdout.write(
    `chromium: ${chromiumPath} is missing and this is not root, so it cannot be installed; ` +
      "the console's browser tests will be skipped (as root: apt-get install -y chromium)\n",
  );
} else {
  process.stdout.write("chromium: installing Debian's chromium (apt-get install -y chromium)\n");
  // A fresh machine may have no package lists yet.
  const installed =
    apt(["install", "-y", "--no-install-recommends", "chromium"]) ||
    (apt(["update"]) && apt(["install", "-y", "--no-install-recommends", "chromium"]));
  process.stdout.write(
    installed && existsSync(chromiumPath)
      ? `chromium: installed at ${chromiumPath}\n`
      : "chromium: apt-get could not install chromium; the console's browser tests will be skipped\n",
  );
}
