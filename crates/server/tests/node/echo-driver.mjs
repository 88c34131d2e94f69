// Drives real Laravel Echo 2 clients (broadcaster "pusher", over pusher-js 8's Node build) for
// crates/server/tests/pusher_echo.rs, as a Laravel front end uses them: channel authorization by
// Echo's own HTTP POST to liveplan's /api/v1/pusher/auth with a Bearer token.
// Reads commands as JSON lines on stdin, prints what the clients see as JSON lines on stdout.
// ES module: laravel-echo 2.5's CommonJS build does not load on Node (its package says
// "type": "module" while that file uses `exports`).
import Echo from 'laravel-echo';
import Pusher from 'pusher-js';
import readline from 'node:readline';

const clients = new Map();
const out = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');

const handlers = {
  connect: (cmd) => {
    const echo = new Echo({
      broadcaster: 'pusher',
      Pusher,
      key: cmd.key,
      cluster: 'mt1',
      wsHost: '127.0.0.1',
      wsPort: cmd.port,
      forceTLS: false,
      enabledTransports: ['ws'],
      disableStats: true,
      authEndpoint: cmd.base + '/api/v1/pusher/auth',
      userAuthentication: { endpoint: cmd.base + '/api/v1/pusher/user-auth', headers: {} },
      bearerToken: cmd.token,
    });
    const connection = echo.connector.pusher.connection;
    connection.bind('connected', () => out({ type: 'connected', client: cmd.client }));
    connection.bind('message', (m) => {
      if (m.event === 'pusher:signin_success') out({ type: 'signed_in', client: cmd.client });
    });
    clients.set(cmd.client, echo);
  },
  // Outside a browser there is no session cookie on the socket: the app signs in (Echo's
  // `connector.signin()`, Pusher's user authentication) before it subscribes to liveplan's
  // own channels, which need to know the user.
  signin: (cmd) => clients.get(cmd.client).connector.signin(),
  private: (cmd) => {
    clients.get(cmd.client).private(cmd.name)
      .subscribed(() => out({ type: 'subscribed', client: cmd.client, channel: cmd.name }))
      .error((e) => out({ type: 'subscription_error', client: cmd.client, channel: cmd.name, status: e && e.status }))
      .listen('.task_created', (data) => out({ type: 'event', client: cmd.client, channel: cmd.name, event: 'task_created', data }));
  },
  join: (cmd) => {
    clients.get(cmd.client).join(cmd.name)
      .here((members) => out({ type: 'here', client: cmd.client, channel: cmd.name, members: members.map((m) => m.name).sort() }))
      .joining((member) => out({ type: 'joining', client: cmd.client, channel: cmd.name, member: member.name }))
      .leaving((member) => out({ type: 'leaving', client: cmd.client, channel: cmd.name, member: member.name }))
      .listenForWhisper('cursor', (data) => out({ type: 'whisper', client: cmd.client, channel: cmd.name, data }))
      .error((e) => out({ type: 'subscription_error', client: cmd.client, channel: cmd.name, status: e && e.status }));
  },
  whisper: (cmd) => {
    clients.get(cmd.client).join(cmd.name).whisper('cursor', cmd.data);
    out({ type: 'whispered', client: cmd.client });
  },
  leave: (cmd) => {
    clients.get(cmd.client).leave(cmd.name);
    out({ type: 'left', client: cmd.client });
  },
};

readline.createInterface({ input: process.stdin }).on('line', (line) => {
  let cmd;
  try {
    cmd = JSON.parse(line);
    handlers[cmd.cmd](cmd);
  } catch (e) {
    out({ type: 'error', message: String(e && e.stack ? e.stack : e), line });
  }
});
out({ type: 'ready' });
