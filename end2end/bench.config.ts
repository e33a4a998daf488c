import { defineConfig } from "@playwright/test";
import base from "./playwright.config";

// `make bench`: the time-to-interactive benchmark, with the same server and browser as the tests.
export default defineConfig({
  ...base,
  testDir: "./bench",
  timeout: 180_000,
});
