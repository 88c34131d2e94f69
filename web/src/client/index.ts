// liveplan's TypeScript client: the HTTP API (login, tickets, writes with X-Tab-Id) and one
// live connection per open project. The app in src/app uses nothing else to reach the server.
export * from './api';
export * from './backoff';
export * from './events';
export * from './live';
export * from './transports';
