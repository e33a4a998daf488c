import { defineConfig, devices } from "@playwright/test";
import { ADMIN_STATE } from "./auth";

// global-setup.ts starts the release slipway-server on a free port and exports its URL here.
const baseURL = process.env.SLIPWAY_E2E_BASE_URL;

export default defineConfig({
  testDir: "./tests",
  outputDir: "./test-results",
  globalSetup: "./global-setup.ts",
  timeout: 30_000,
  expect: { timeout: 10_000 },
  fullyParallel: false,
  forbidOnly: true,
  retries: 0,
  workers: 1,
  reporter: [["list"]],
  use: {
    baseURL,
    // Signed in as admin (global-setup.ts); tests that need someone else make their own context.
    storageState: ADMIN_STATE,
    // Browsers send Origin with every POST and the server requires it of cookie-authenticated
    // state changes; Playwright's request API (page.request) is no browser and sends none.
    extraHTTPHeaders: baseURL ? { origin: baseURL } : {},
    trace: "retain-on-failure",
    screenshot: "only-on-failure",
  },
  projects: [
    {
      name: "chromium",
      use: {
        ...devices["Desktop Chrome"],
        headless: true,
        launchOptions: {
          // Debian's chromium (scripts/bootstrap.sh test), not a downloaded browser.
          executablePath: process.env.CHROMIUM_PATH ?? "/usr/bin/chromium",
          args: [
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
          ],
        },
      },
    },
  ],
});
