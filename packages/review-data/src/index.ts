/**
 * The review's data without its pages: local accounts (`kneegrade user …`, the login) and the
 * agreement figures between the AI and the radiologists (`kneegrade status`, the agreement page).
 */
export * from "./agreement.ts";
export * from "./password.ts";
export * from "./users.ts";
