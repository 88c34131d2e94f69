// Drives the real `pusher` server SDK 5 against liveplan, for crates/server/tests/pusher_sdk.rs.
// Reads {config: {appId, key, secret, host, port}, ops: [...]} as JSON on stdin; prints one JSON
// line per op: {status, body} for an answer (any status), {thrown} when the SDK itself refused.
// An op may carry `skewSeconds`: the SDK's clock is moved by that much for it (stale timestamps).
const Pusher = require("pusher");

async function run(pusher, op) {
  const realNow = Date.now;
  if (op.skewSeconds) {
    Date.now = () => realNow() + op.skewSeconds * 1000;
  }
  try {
    let pending;
    switch (op.op) {
      case "trigger":
        pending = pusher.trigger(op.channels, op.event, op.data, op.params);
        break;
      case "triggerBatch":
        pending = pusher.triggerBatch(op.batch);
        break;
      case "get":
        pending = pusher.get({ path: op.path, params: op.params });
        break;
      case "post":
        pending = pusher.post({ path: op.path, body: op.body });
        break;
      case "terminateUserConnections":
        pending = pusher.terminateUserConnections(op.userId);
        break;
      case "sendToUser":
        pending = pusher.sendToUser(op.userId, op.event, op.data);
        break;
      case "authorizeChannel":
        return { result: pusher.authorizeChannel(op.socketId, op.channel, op.data) };
      case "authenticateUser":
        return { result: pusher.authenticateUser(op.socketId, op.userData) };
      default:
        throw new Error("unknown op " + op.op);
    }
    const response = await pending;
    const text = await response.text();
    return { status: response.status, body: text ? JSON.parse(text) : null };
  } catch (error) {
    if (error && error.status) {
      let body = error.body;
      try {
        body = JSON.parse(error.body);
      } catch (_) {}
      return { status: error.status, body };
    }
    return { thrown: String(error && error.message) };
  } finally {
    Date.now = realNow;
  }
}

let input = "";
process.stdin.on("data", (chunk) => (input += chunk));
process.stdin.on("end", async () => {
  const { config, ops } = JSON.parse(input);
  const pusher = new Pusher({ ...config, useTLS: false, timeout: 20000 });
  for (const op of ops) {
    console.log(JSON.stringify(await run(pusher, op)));
  }
});
