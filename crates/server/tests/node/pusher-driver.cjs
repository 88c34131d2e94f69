// Drives real pusher-js 8 clients (the Node build) for crates/server/tests/pusher_ws.rs.
// Reads commands as JSON lines on stdin, prints what the clients see as JSON lines on stdout.
// Channel and user authorization ask the test (it signs with liveplan's credentials): an
// `auth_request` line goes out, the answer comes back as an `auth` command.
const Pusher = require('pusher-js');
const readline = require('readline');

const clients = new Map();
const pendingAuth = new Map();
const out = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');

function connect(cmd) {
  const id = cmd.client;
  const pusher = new Pusher(cmd.key, {
    cluster: 'mt1',
    wsHost: '127.0.0.1',
    wsPort: cmd.port,
    forceTLS: false,
    enabledTransports: ['ws'],
    disableStats: true,
    activityTimeout: 120000,
    channelAuthorization: {
      customHandler: (params, callback) => {
        pendingAuth.set(id + '|' + params.channelName, callback);
        out({ type: 'auth_request', client: id, socket_id: params.socketId, channel: params.channelName });
      },
    },
    userAuthentication: {
      customHandler: (params, callback) => {
        pendingAuth.set(id + '|#user', callback);
        out({ type: 'auth_request', client: id, socket_id: params.socketId, channel: '#user' });
      },
    },
  });
  pusher.connection.bind('connected', () => out({ type: 'connected', client: id, socket_id: pusher.connection.socket_id }));
  pusher.connection.bind('state_change', (s) => out({ type: 'state', client: id, previous: s.previous, current: s.current }));
  pusher.connection.bind('message', (m) => {
    if (m.event === 'pusher:error' || m.event === 'pusher:signin_success' || m.event === 'pusher:resume_success') {
      out({ type: 'message', client: id, event: m.event, data: m.data });
    }
  });
  pusher.connection.bind('error', (e) => out({ type: 'error', client: id, error: e && e.error ? e.error : e }));
  pusher.user.bind_global((event, data) => out({ type: 'user_event', client: id, event, data }));
  clients.set(id, pusher);
}

function subscribe(cmd) {
  const pusher = clients.get(cmd.client);
  const channel = pusher.subscribe(cmd.channel);
  channel.bind_global((event, data, metadata) => {
    out({ type: 'event', client: cmd.client, channel: cmd.channel, event, data, user_id: metadata && metadata.user_id });
  });
  // Named bindings get the metadata (`user_id` of presence client events); global ones do not.
  for (const name of cmd.bind || []) {
    channel.bind(name, (data, metadata) => {
      out({ type: 'bound', client: cmd.client, channel: cmd.channel, event: name, data, user_id: metadata && metadata.user_id });
    });
  }
  if (cmd.channel.startsWith('presence-')) {
    channel.bind('pusher:subscription_succeeded', (members) => {
      const list = [];
      members.each((m) => list.push(m.id));
      list.sort();
      out({ type: 'members', client: cmd.client, channel: cmd.channel, me: members.me && members.me.id, members: list, count: members.count });
    });
  }
}

const handlers = {
  connect,
  subscribe,
  unsubscribe: (cmd) => clients.get(cmd.client).unsubscribe(cmd.channel),
  trigger: (cmd) => {
    const ok = clients.get(cmd.client).channel(cmd.channel).trigger(cmd.event, cmd.data);
    out({ type: 'triggered', client: cmd.client, ok });
  },
  signin: (cmd) => clients.get(cmd.client).signin(),
  send_event: (cmd) => clients.get(cmd.client).send_event(cmd.event, cmd.data, cmd.channel),
  disconnect: (cmd) => clients.get(cmd.client).disconnect(),
  auth: (cmd) => {
    const key = cmd.client + '|' + cmd.channel;
    const callback = pendingAuth.get(key);
    pendingAuth.delete(key);
    if (!callback) return out({ type: 'no_pending_auth', client: cmd.client, channel: cmd.channel });
    if (cmd.refuse) return callback(new Error('refused'), null);
    const answer = { auth: cmd.auth };
    if (cmd.channel_data !== undefined) answer.channel_data = cmd.channel_data;
    if (cmd.user_data !== undefined) answer.user_data = cmd.user_data;
    callback(null, answer);
  },
  exit: () => {
    for (const pusher of clients.values()) pusher.disconnect();
    setTimeout(() => process.exit(0), 100);
  },
};

readline.createInterface({ input: process.stdin }).on('line', (line) => {
  if (!line.trim()) return;
  let cmd;
  try {
    cmd = JSON.parse(line);
  } catch (e) {
    return out({ type: 'bad_command', line });
  }
  const handler = handlers[cmd.op];
  if (!handler) return out({ type: 'bad_command', line });
  try {
    handler(cmd);
  } catch (e) {
    out({ type: 'command_failed', op: cmd.op, error: String(e) });
  }
});
process.stdin.on('end', () => handlers.exit());
// Bounded: whatever happens, the driver does not outlive its test by long.
setTimeout(() => process.exit(3), 120000).unref();
