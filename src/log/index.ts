export { renderMetrics, startMetricsServer, parseHostPort } from './metrics.js';
export type { Metric } from './metrics.js';
