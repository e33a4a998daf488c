import path from "node:path";

/** The password the test server's first admin gets (SLIPWAY_ADMIN_PASSWORD). */
export const ADMIN_PASSWORD = "admin-password-for-e2e";

/** The admin's signed-in browser state, written by global-setup.ts; every test starts with it. */
export const ADMIN_STATE = path.join(__dirname, "output", ".auth", "admin.json");
