// Drives real yjs 13 + y-websocket 3 clients for crates/server/tests/whiteboard*.rs.
// Reads commands as JSON lines on stdin, prints what the clients see as JSON lines on stdout.
// Every reply names its client; `seq` echoes the command's, so the test can wait for it.
const Y = require('yjs');
const { WebsocketProvider } = require('y-websocket');
const WebSocket = require('ws');
const readline = require('readline');

const clients = new Map();
const out = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');

// y-websocket reports a refused update (the auth message) through console.warn.
console.warn = (...args) => out({ type: 'warn', text: args.join(' ') });

function open(cmd) {
  const doc = new Y.Doc();
  const provider = new WebsocketProvider(cmd.url, cmd.board, doc, {
    params: cmd.ticket ? { ticket: cmd.ticket } : {},
    WebSocketPolyfill: WebSocket,
    disableBc: true,
  });
  const id = cmd.client;
  provider.on('status', (e) => out({ type: 'status', client: id, status: e.status }));
  provider.on('sync', (synced) => out({ type: 'sync', client: id, synced }));
  provider.on('connection-close', (e) => out({ type: 'close', client: id, code: e ? e.code : null }));
  provider.on('closed', (e) => out({ type: 'closed', client: id, code: e.code }));
  clients.set(id, { doc, provider });
}

function element(doc, cmd) {
  const el = new Y.Map();
  el.set('id', cmd.key);
  el.set('type', cmd.kind || 'rect');
  for (const [k, v] of Object.entries(cmd.fields || {})) el.set(k, v);
  const points = new Y.Array();
  points.push(cmd.points || []);
  el.set('points', points);
  const text = new Y.Text();
  text.insert(0, cmd.text || '');
  el.set('text', text);
  doc.getMap('elements').set(cmd.key, el);
}

function handle(cmd) {
  const c = clients.get(cmd.client);
  switch (cmd.cmd) {
    case 'open': open(cmd); break;
    case 'element': c.doc.transact(() => element(c.doc, cmd)); break;
    case 'field': c.doc.getMap('elements').get(cmd.key).set(cmd.field, cmd.value); break;
    case 'delete': c.doc.getMap('elements').delete(cmd.key); break;
    case 'meta': c.doc.getMap('meta').set(cmd.key, cmd.value); break;
    case 'big': c.doc.getMap('meta').set('big', 'x'.repeat(cmd.size)); break;
    case 'fill': c.doc.getMap('meta').set(cmd.key, cmd.char.repeat(cmd.size)); break;
    case 'awareness': c.provider.awareness.setLocalState(cmd.state); break;
    case 'disconnect': c.provider.disconnect(); break;
    case 'connect':
      if (cmd.ticket) c.provider.params = { ticket: cmd.ticket };
      c.provider.connect();
      break;
    case 'destroy': c.provider.destroy(); clients.delete(cmd.client); break;
    case 'exit': process.exit(0); break;
    default: break;
  }
  const now = clients.get(cmd.client);
  if (now) {
    const peers = [];
    for (const [clientId, state] of now.provider.awareness.getStates()) {
      if (clientId !== now.doc.clientID) peers.push(state);
    }
    out({
      type: 'state',
      client: cmd.client,
      seq: cmd.seq,
      synced: now.provider.synced,
      connected: now.provider.wsconnected,
      elements: now.doc.getMap('elements').toJSON(),
      meta: now.doc.getMap('meta').toJSON(),
      peers,
    });
  } else {
    out({ type: 'state', client: cmd.client, seq: cmd.seq });
  }
}

readline.createInterface({ input: process.stdin }).on('line', (line) => {
  if (!line.trim()) return;
  try {
    handle(JSON.parse(line));
  } catch (e) {
    out({ type: 'error', text: String(e && e.stack ? e.stack : e) });
  }
});
out({ type: 'ready' });
