// A real EventSource client for the SSE tests: prints one JSON line per happening on stdout.
// Usage: node sse-client.mjs URL BEARER_TOKEN LAST_ID
// Exits 0 once it has seen the message whose id is LAST_ID; the Rust test bounds the wait.
import { EventSource } from 'eventsource';

const [url, token, lastId] = process.argv.slice(2);
const print = (value) => process.stdout.write(JSON.stringify(value) + '\n');

const source = new EventSource(url, {
  // The package's documented way to add headers; it adds Last-Event-ID itself on reconnect.
  fetch: (input, init) =>
    fetch(input, { ...init, headers: { ...init.headers, Authorization: `Bearer ${token}` } }),
});
source.onopen = () => print({ kind: 'open' });
source.onerror = (event) => print({ kind: 'error', message: String(event?.message ?? '') });
source.onmessage = (event) => {
  print({ kind: 'message', id: event.lastEventId, data: JSON.parse(event.data) });
  if (event.lastEventId === lastId) {
    source.close();
    process.exit(0);
  }
};
