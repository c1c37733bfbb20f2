export {
  cachedCheck,
  postgresCheck,
  type ReadinessCheck,
  redisCheck,
  withTimeout,
} from "./health.ts";
export { createMetrics, type Metrics } from "./metrics.ts";
export {
  type MetricSource,
  type OpsServerOptions,
  type ReadinessReport,
  type RunningOpsServer,
  startOpsServer,
} from "./server.ts";
export { JOB_STATES, registerStateGauges, STUDY_STATES } from "./state.ts";
